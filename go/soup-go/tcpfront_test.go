package main

import (
	"strings"
	"testing"
)

// The port range is read as go-plugin's serverListener_tcp reads it, with
// python/soup/listen.py's messages.
func TestTCPPortRange(t *testing.T) {
	cases := []struct {
		min, max string
		want     portRange
		err      string
	}{
		{"", "", portRange{0, 0}, ""},
		{"20000", "20010", portRange{20000, 20010}, ""},
		{"25000", "24000", portRange{}, "PLUGIN_MIN_PORT value of 25000 is greater than PLUGIN_MAX_PORT value of 24000"},
		{"", "25k", portRange{}, `couldn't get value from PLUGIN_MAX_PORT: "25k" is not an integer`},
		{" 1", "2", portRange{}, "couldn't get value from PLUGIN_MIN_PORT"},
		{"1", "70000", portRange{}, "port range 1..70000 is outside 0..65535"},
	}
	for _, c := range cases {
		env := map[string]string{envMinPort: c.min, envMaxPort: c.max}
		got, err := tcpPortRange(func(k string) string { return env[k] })
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%q..%q: got %v, %v; want %v", c.min, c.max, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q..%q: got error %v; want one containing %q", c.min, c.max, err, c.err)
		}
	}
}
