// Command soup-go is the Go half of soup: a go-plugin KV plugin and host
// built on the real hashicorp/go-plugin, with the same CLI as the Python
// `soup`, so the conformance matrix can pair any host with any plugin.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// appVersion is soup-go's own version; the rest of the version string is
// read from the binary (Go runtime, go-plugin module).
const appVersion = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// versionString is e.g. "soup-go 0.1.0 (go1.26.8, go-plugin v1.8.0)", with
// go-plugin's version taken from the build info, not typed in.
func versionString() string {
	gp := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hashicorp/go-plugin" {
				gp = d.Version
				if d.Replace != nil {
					gp = d.Replace.Version
				}
			}
		}
	}
	return fmt.Sprintf("soup-go %s (%s, go-plugin %s)", appVersion, runtime.Version(), gp)
}

const topUsage = `usage: soup-go <command> [flags]

soup-go is a go-plugin harness on hashicorp/go-plugin: a KV plugin and a host
that tests any go-plugin KV plugin (Go or Python) over real processes.

commands:
  rpc server-start              run as a go-plugin KV plugin (started by a host)
  rpc client test --server CMD  launch CMD as a plugin; put, get, get_missing, health, shutdown
                  --reattach J  the same against a running debug plugin (rpc server-start --debug)
  rpc client bench --server CMD time Put+Get round trips against CMD
  rpc client callback-test --server CMD  prove GRPCBroker callbacks both ways (counter demo)
  rpc kv put KEY VALUE|- --server CMD  (or --value-file F; - reads stdin)
  rpc kv get KEY --server CMD
  version                       print the version

Run 'soup-go <command> --help' for the flags of a command.
`

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	help := func(a []string) bool { return len(a) == 0 || a[0] == "-h" || a[0] == "--help" || a[0] == "help" }
	unknown := func(what string) int {
		fmt.Fprintf(stderr, "soup-go: error: unknown command %q\n\n%s", what, topUsage)
		return 2
	}
	switch {
	case help(args):
		if len(args) == 0 {
			fmt.Fprint(stderr, topUsage)
			return 2
		}
		fmt.Fprint(stdout, topUsage)
		return 0
	case args[0] == "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case args[0] != "rpc":
		return unknown(args[0])
	}
	args = args[1:]
	if help(args) {
		fmt.Fprint(stdout, topUsage)
		return boolCode(len(args) == 0)
	}
	switch args[0] {
	case "server-start":
		return serverStart(args[1:], stdout, stderr)
	case "client", "kv":
		group := args[0]
		rest := args[1:]
		if help(rest) {
			fmt.Fprint(stdout, topUsage)
			return boolCode(len(rest) == 0)
		}
		switch group + " " + rest[0] {
		case "client test":
			return clientTest(rest[1:], stdout, stderr)
		case "client callback-test": // broker hook: the callback demo (counter_host.go)
			return clientCallbackTest(rest[1:], stdout, stderr)
		case "client bench":
			return clientBench(rest[1:], stdout, stderr)
		case "kv put":
			return kvPut(rest[1:], stdout, stderr)
		case "kv get":
			return kvGet(rest[1:], stdout, stderr)
		}
		return unknown("rpc " + group + " " + rest[0])
	}
	return unknown("rpc " + strings.Join(args[:1], " "))
}

// boolCode: a bare group name is a usage error (2); asking for help is not.
func boolCode(bare bool) int {
	if bare {
		return 2
	}
	return 0
}

func clientTest(args []string, stdout, stderr io.Writer) int {
	c := newCommand("rpc client test", "--server CMD [flags]", `
Act as a go-plugin host (plugin.NewClient from hashicorp/go-plugin, gRPC only):
launch CMD as a plugin and run the steps spawn, handshake, put, get (same bytes
back), get_missing (must be NOT_FOUND), health (grpc.health.v1 "plugin" must be
SERVING) and shutdown (the plugin must exit by itself within 2 s). Stops at the
first failing step; always ends the plugin. With --reattach JSON it connects to
a running debug plugin instead of starting one, and shuts it down at the end
unless --keep-running (then the shutdown step is "skipped"). Prints evidence
lines, or with --json exactly one JSON object on stdout. Exit 0 pass, 1 fail,
2 usage error.`,
		`soup-go rpc client test --json --server 'soup-go rpc server-start --transport tcp'`)
	var (
		hf     hostFlags
		asJSON bool
	)
	hf.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON result object instead of evidence lines")
	c.fs.StringVar(&kvProfile, "kv-profile", "strict", "strict: exact bytes, NOT_FOUND; lenient: appended bytes, any error (peers)")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		if err := checkKVProfileFlag(); err != nil {
			return 2, err
		}
		res := runTest(hf.options(), stderr)
		if asJSON {
			if err := res.writeJSON(stdout); err != nil {
				return 1, err
			}
		} else {
			res.writeHuman(stdout, hf.peerLabel())
		}
		if !res.OK {
			return 1, nil
		}
		return 0, nil
	})
}
