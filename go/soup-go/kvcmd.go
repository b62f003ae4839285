package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"google.golang.org/grpc/status"

	"soup-go/kvpb"
)

// kvOp is what one `rpc kv` command adds to the host flags.
type kvOp struct {
	flags   func(fs *flag.FlagSet)   // its own flags (may be nil)
	args    func(pos []string) error // checks the positionals (usage errors)
	prepare func(pos []string) error // runs before the plugin starts (may be nil)
	do      func(h *host, pos []string) error
}

// kvCommand builds `rpc kv put|get`: one operation against a fresh plugin.
func kvCommand(name, synopsis, about, example string, stdout, stderr io.Writer, args []string, op kvOp) int {
	c := newCommand("rpc kv "+name, synopsis, about, example)
	var hf hostFlags
	hf.register(c.fs)
	if op.flags != nil {
		op.flags(c.fs)
	}
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if err := op.args(pos); err != nil {
			return 2, err
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		// A gRPC string must be UTF-8; say so before starting a plugin (as soup does).
		if !utf8.ValidString(pos[0]) {
			return 2, usagef("KEY is not valid UTF-8")
		}
		if op.prepare != nil {
			if err := op.prepare(pos); err != nil {
				return 1, err
			}
		}
		err := withPlugin(hf.options(), stderr, func(h *host) error { return op.do(h, pos) })
		if err != nil {
			// gRPC errors as "error: NOT_FOUND: key not found" (both impls).
			return 1, err
		}
		return 0, nil
	})
}

func exactly(n int) func(pos []string) error {
	return func(pos []string) error {
		if len(pos) != n {
			return usagef("expected %d argument(s), got %d", n, len(pos))
		}
		return nil
	}
}

// stdinValue is the VALUE that means "read the value from stdin".
const stdinValue = "-"

func kvPut(args []string, stdout, stderr io.Writer) int {
	var valueFile string
	var value []byte
	return kvCommand("put", "KEY VALUE|- --server CMD [flags]  or  KEY --value-file F --server CMD", `
Launch CMD as a go-plugin KV plugin, Put KEY=VALUE (VALUE as UTF-8 bytes; "-"
reads the value from stdin, --value-file F from a file, both as raw bytes of
any size), end the plugin. Prints nothing on success; on a gRPC error prints
"error: CODE: message" on stderr and exits 1.`,
		`soup-go rpc kv put greeting hello --server 'soup-go rpc server-start --kv-dir /tmp/kv'`,
		stdout, stderr, args, kvOp{
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&valueFile, "value-file", "", "read the value from this file (instead of VALUE)")
			},
			args: func(pos []string) error {
				if valueFile != "" {
					if len(pos) == 2 {
						return usagef("VALUE and --value-file cannot be used together")
					}
					return exactly(1)(pos)
				}
				return exactly(2)(pos)
			},
			prepare: func(pos []string) (err error) {
				value, err = putValue(pos, valueFile, os.Stdin)
				return err
			},
			do: func(h *host, pos []string) error {
				ctx, cancel := h.rpcCtx()
				defer cancel()
				_, err := h.kv.kv.Put(ctx, &kvpb.PutRequest{Key: pos[0], Value: value})
				return grpcErr(err)
			},
		})
}

// putValue is the value to Put: VALUE, stdin for "-", or the --value-file.
func putValue(pos []string, valueFile string, stdin io.Reader) ([]byte, error) {
	switch {
	case valueFile != "":
		b, err := os.ReadFile(valueFile)
		if err != nil {
			return nil, fmt.Errorf("reading --value-file: %w", err)
		}
		return b, nil
	case pos[1] == stdinValue:
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the value from stdin: %w", err)
		}
		return b, nil
	}
	return []byte(pos[1]), nil
}

func kvGet(args []string, stdout, stderr io.Writer) int {
	return kvCommand("get", "KEY --server CMD [flags]", `
Launch CMD as a go-plugin KV plugin, Get KEY and print the raw value bytes on
stdout (no newline added), end the plugin. On a gRPC error prints
"error: CODE: message" on stderr (e.g. NOT_FOUND: key not found) and exits 1.`,
		`soup-go rpc kv get greeting --server 'soup-go rpc server-start --kv-dir /tmp/kv'`,
		stdout, stderr, args, kvOp{
			args: exactly(1),
			do: func(h *host, pos []string) error {
				ctx, cancel := h.rpcCtx()
				defer cancel()
				resp, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: pos[0]})
				if err != nil {
					return grpcErr(err)
				}
				_, err = stdout.Write(resp.GetValue())
				return err
			},
		})
}

// grpcErr turns a gRPC status into "CODE: message"; nil stays nil.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return rpcError(err)
	}
	return err
}
