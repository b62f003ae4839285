package main

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
)

// handshakeFlags are the go-plugin handshake settings of the shared contract,
// on every command that starts a plugin or is one.
type handshakeFlags struct {
	cookieKey, cookieValue, versions string
}

func (h *handshakeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.cookieKey, "magic-cookie-key", defaultCookieKey, "magic cookie variable name (go-plugin HandshakeConfig.MagicCookieKey)")
	fs.StringVar(&h.cookieValue, "magic-cookie-value", defaultCookieValue, "magic cookie value (go-plugin HandshakeConfig.MagicCookieValue)")
	fs.StringVar(&h.versions, "protocol-versions", defaultProtocolVersions,
		"comma list of app protocol versions: a plugin serves them, a host asks for them (go-plugin VersionedPlugins)")
}

// handshake is the parsed form: the cookie and the versions, ascending.
type handshake struct {
	cookieKey, cookieValue string
	versions               []int
}

// parse validates the flags; mistakes are usage errors (exit 2).
func (h *handshakeFlags) parse() (handshake, error) {
	if h.cookieKey == "" || strings.Contains(h.cookieKey, "=") {
		return handshake{}, usagef("invalid --magic-cookie-key %q (a non-empty variable name without '=')", h.cookieKey)
	}
	if h.cookieValue == "" {
		return handshake{}, usagef("--magic-cookie-value must not be empty")
	}
	versions, err := parseVersions(h.versions)
	if err != nil {
		return handshake{}, usagef("invalid --protocol-versions %q: %v", h.versions, err)
	}
	return handshake{cookieKey: h.cookieKey, cookieValue: h.cookieValue, versions: versions}, nil
}

// maxVersion keeps a version an int on every platform and in every peer.
const maxVersion = 1<<31 - 1

// parseVersions reads "5,6" into [5 6]: positive decimal integers, sorted,
// duplicates dropped. Huge or malformed entries are errors, never panics.
func parseVersions(s string) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, errors.New("empty entry")
		}
		if len(part) > 10 || strings.Trim(part, "0123456789") != "" {
			return nil, fmt.Errorf("%q is not a positive integer", shorten(part))
		}
		v, err := strconv.Atoi(part)
		if err != nil || v < 1 || v > maxVersion {
			return nil, fmt.Errorf("%q is not a positive integer of at most %d", part, maxVersion)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return out, nil
}

// shorten keeps error messages short when the input is not (a 5,000-digit number).
func shorten(s string) string {
	if len(s) <= 20 {
		return s
	}
	return fmt.Sprintf("%s...(%d characters)", s[:20], len(s))
}

// config is go-plugin's HandshakeConfig. ProtocolVersion stays 0: the
// versions go into VersionedPlugins.
func (h handshake) config() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{MagicCookieKey: h.cookieKey, MagicCookieValue: h.cookieValue}
}

// pluginSets maps every version to the same plugins, the KV plugin and the
// broker callback demo (counter.go): soup-go's services are the same in each,
// which is all the negotiation tests need.
func (h handshake) pluginSets(p plugin.Plugin) map[int]plugin.PluginSet {
	sets := make(map[int]plugin.PluginSet, len(h.versions))
	for _, v := range h.versions {
		sets[v] = plugin.PluginSet{pluginName: p, counterPluginName: &counterPlugin{}}
	}
	return sets
}

// serves reports whether v is one of the versions.
func (h handshake) serves(v int) bool {
	for _, have := range h.versions {
		if have == v {
			return true
		}
	}
	return false
}

// incompatibleVersion is go-plugin's own wording (client.go checkProtoVersion),
// for the checks soup-go makes itself (reattach).
func incompatibleVersion(plugin int, client []int) error {
	return fmt.Errorf("incompatible API version with plugin. Plugin version: %d, Client versions: %d", plugin, client)
}
