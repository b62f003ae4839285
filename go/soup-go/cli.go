package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// usageError is a command-line mistake: exit code 2, like argparse and flag.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// command is one subcommand: its flags and the text --help prints.
type command struct {
	path     string // "rpc client test"
	synopsis string // "--server CMD [flags]"
	about    string // what it does, why it exists
	example  string
	fs       *flag.FlagSet
}

func newCommand(path, synopsis, about, example string) *command {
	fs := flag.NewFlagSet("soup-go "+path, flag.ContinueOnError)
	// flag would print its own usage on every error; we print ours (see parse).
	fs.SetOutput(io.Discard)
	return &command{path: path, synopsis: synopsis, about: about, example: example, fs: fs}
}

// printUsage writes the --help text.
func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: soup-go %s %s\n\n%s\n", c.path, c.synopsis, strings.TrimSpace(c.about))
	fmt.Fprintln(w, "\nflags:")
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
	if c.example != "" {
		fmt.Fprintf(w, "\nexample:\n  %s\n", c.example)
	}
}

// parse parses flags and positionals in any order (as argparse does), since
// the contract writes `rpc kv put KEY VALUE --server CMD` with flags last.
// The go flag package stops at the first positional, so parse in rounds.
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			// Everything after "--" is positional.
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// run parses args and calls fn, turning --help and usage errors into output
// and exit codes (0 and 2).
func (c *command) run(args []string, stdout, stderr io.Writer, fn func(pos []string) (int, error)) int {
	pos, err := c.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printUsage(stdout)
		return 0
	}
	var code int
	if err == nil {
		code, err = fn(pos)
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "soup-go %s: error: %s\nRun 'soup-go %s --help' for usage.\n", c.path, ue.msg, c.path)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %s\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// tlsFlags are the TLS flags shared by every command.
type tlsFlags struct {
	mode, keyType, certFile, keyFile, caFile string
}

func (t *tlsFlags) register(fs *flag.FlagSet, defaultKey string) {
	fs.StringVar(&t.mode, "tls-mode", "auto", "auto (go-plugin AutoMTLS), manual (--cert-file/--key-file/--ca-file) or disabled (plaintext; both sides must ask)")
	fs.StringVar(&t.keyType, "key-type", defaultKey, "key type of the own certificate in auto mode: "+strings.Join(keyTypes, ", "))
	fs.StringVar(&t.certFile, "cert-file", "", "manual mode: own certificate (PEM)")
	fs.StringVar(&t.keyFile, "key-file", "", "manual mode: own private key (PEM)")
	fs.StringVar(&t.caFile, "ca-file", "", "manual mode: CA certificate(s) that issued the peer's certificate (PEM)")
}

// validate reports mistakes that are usage errors (exit 2).
func (t *tlsFlags) validate() error {
	switch t.mode {
	case "auto", "manual", "disabled":
	default:
		return usagef("invalid --tls-mode %q (choose from auto, manual, disabled)", t.mode)
	}
	if !validKeyType(t.keyType) {
		return usagef("invalid --key-type %q (choose from %s)", t.keyType, strings.Join(keyTypes, ", "))
	}
	if t.mode == "manual" {
		for _, f := range []struct{ name, val string }{
			{"--cert-file", t.certFile}, {"--key-file", t.keyFile}, {"--ca-file", t.caFile},
		} {
			if f.val == "" {
				return usagef("--tls-mode manual requires %s", f.name)
			}
		}
	}
	return nil
}

// hostFlags are the flags of every command that launches a plugin or
// reattaches to one.
type hostFlags struct {
	server      string
	reattach    string
	keepRunning bool
	multiplex   bool
	timeout     float64
	tls         tlsFlags
	hs          handshakeFlags

	parsed hostOptions // filled by validate
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.server, "server", "", "plugin command line, split with shell rules (this or --reattach is required)")
	fs.StringVar(&h.reattach, "reattach", "", "reattach config (JSON) of a running plugin, as `rpc server-start --debug` prints it, instead of --server")
	fs.BoolVar(&h.keepRunning, "keep-running", false, "with --reattach: leave the plugin running at the end (no Shutdown)")
	fs.BoolVar(&h.multiplex, "grpc-broker-multiplex", false, "go-plugin's GRPCBrokerMultiplex (v1.6.0+): every connection, the main one and the brokered ones, is a stream of one yamux session; a plugin that does not say so in field 7 is refused")
	fs.Float64Var(&h.timeout, "timeout", 30, "seconds: bound on each wait for the plugin (start and handshake line, connection)")
	h.tls.register(fs, goPluginKeyType)
	h.hs.register(fs)
}

// validate checks the flags (usage errors, exit 2) and keeps what options returns.
func (h *hostFlags) validate() error {
	server := strings.TrimSpace(h.server) != ""
	switch {
	case server && h.reattach != "":
		return usagef("--server and --reattach cannot be used together")
	case !server && h.reattach == "":
		return usagef("--server or --reattach is required")
	case h.keepRunning && h.reattach == "":
		return usagef("--keep-running needs --reattach (a plugin the host started always ends with it)")
	case h.multiplex && h.reattach != "":
		return usagef("--grpc-broker-multiplex cannot be used with --reattach (go-plugin supports neither together)")
	}
	if h.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if err := h.tls.validate(); err != nil {
		return err
	}
	hs, err := h.hs.parse()
	if err != nil {
		return err
	}
	h.parsed = hostOptions{
		hs:          hs,
		tls:         h.tls,
		timeout:     time.Duration(h.timeout * float64(time.Second)),
		keepRunning: h.keepRunning,
		multiplex:   h.multiplex,
	}
	if h.reattach != "" {
		if h.parsed.reattach, err = parseReattach(h.reattach); err != nil {
			return usagef("--reattach: %v", err)
		}
		return nil
	}
	if h.parsed.argv, err = splitShell(h.server); err != nil {
		return usagef("--server: %v", err)
	}
	return nil
}

// peerLabel names the plugin in evidence lines: its command or reattach config.
func (h *hostFlags) peerLabel() string {
	if h.reattach != "" {
		return "reattach " + h.reattach
	}
	return h.server
}

// options is what validate accepted.
func (h *hostFlags) options() hostOptions { return h.parsed }

// splitShell splits a command line like Python's shlex.split (POSIX mode, no
// comments), so `--server` means the same to soup and soup-go: whitespace
// separates words, single quotes are literal, in double quotes a backslash
// only escapes '"' and '\', outside quotes a backslash escapes any character.
func splitShell(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && r != '"' && r != '\\' {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if escaped {
		return nil, errors.New("no escaped character after a trailing backslash")
	}
	if quote != 0 {
		return nil, errors.New("no closing quotation")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
