package main

import (
	"io"
	"unicode/utf8"

	"google.golang.org/grpc/status"

	"soup-go/kvpb"
)

// kvCommand builds `rpc kv put|get`: one operation against a fresh plugin.
func kvCommand(op, synopsis, about, example string, nargs int, stdout, stderr io.Writer,
	args []string, do func(h *host, pos []string) error) int {
	c := newCommand("rpc kv "+op, synopsis, about, example)
	var hf hostFlags
	hf.register(c.fs)
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) != nargs {
			return 2, usagef("expected %d argument(s), got %d", nargs, len(pos))
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		// A gRPC string must be UTF-8; say so before starting a plugin (as soup does).
		if !utf8.ValidString(pos[0]) {
			return 2, usagef("KEY is not valid UTF-8")
		}
		err := withPlugin(hf.options(), stderr, func(h *host) error { return do(h, pos) })
		if err != nil {
			// gRPC errors as "error: NOT_FOUND: key not found" (both impls).
			return 1, err
		}
		return 0, nil
	})
}

func kvPut(args []string, stdout, stderr io.Writer) int {
	return kvCommand("put", "KEY VALUE --server CMD [flags]", `
Launch CMD as a go-plugin KV plugin, Put KEY=VALUE (VALUE as UTF-8 bytes), end
the plugin. Prints nothing on success; on a gRPC error prints
"error: CODE: message" on stderr and exits 1.`,
		`soup-go rpc kv put greeting hello --server 'soup-go rpc server-start --kv-dir /tmp/kv'`,
		2, stdout, stderr, args, func(h *host, pos []string) error {
			ctx, cancel := rpcCtx()
			defer cancel()
			_, err := h.kv.kv.Put(ctx, &kvpb.PutRequest{Key: pos[0], Value: []byte(pos[1])})
			return grpcErr(err)
		})
}

func kvGet(args []string, stdout, stderr io.Writer) int {
	return kvCommand("get", "KEY --server CMD [flags]", `
Launch CMD as a go-plugin KV plugin, Get KEY and print the raw value bytes on
stdout (no newline added), end the plugin. On a gRPC error prints
"error: CODE: message" on stderr (e.g. NOT_FOUND: key not found) and exits 1.`,
		`soup-go rpc kv get greeting --server 'soup-go rpc server-start --kv-dir /tmp/kv'`,
		1, stdout, stderr, args, func(h *host, pos []string) error {
			ctx, cancel := rpcCtx()
			defer cancel()
			resp, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: pos[0]})
			if err != nil {
				return grpcErr(err)
			}
			_, err = stdout.Write(resp.GetValue())
			return err
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
