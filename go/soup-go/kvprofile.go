package main

// KV profiles for `rpc client test` (the same as python/soup/kvprofile.py).
// strict (default) is soup's own contract: Get returns exactly the bytes Put
// stored, a missing key is NOT_FOUND. lenient is for peers whose KV semantics
// differ on purpose (go-plugin's example plugins append text to every value
// and answer a missing key with another error): the stored bytes must still
// come back as a prefix and a missing key must still be an error, and the
// difference is reported in the step's detail.

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kvProfile is set by `rpc client test --kv-profile`.
var kvProfile = "strict"

func checkKVProfileFlag() error {
	if kvProfile != "strict" && kvProfile != "lenient" {
		return usagef("--kv-profile must be strict or lenient, not %q", kvProfile)
	}
	return nil
}

func checkGet(key string, put, got []byte) (string, error) {
	if bytes.Equal(got, put) {
		return fmt.Sprintf("key=%s bytes=%d same bytes", key, len(got)), nil
	}
	if kvProfile == "lenient" && bytes.HasPrefix(got, put) {
		extra := got[len(put):]
		shown := extra[:min(len(extra), 64)]
		return fmt.Sprintf("key=%s lenient: stored bytes plus %d appended by the plugin: %q", key, len(extra), shown), nil
	}
	return "", fmt.Errorf("get returned %q, put wrote %q", got, put)
}

func checkMissing(key string, err error) (string, error) {
	if err == nil {
		return "", fmt.Errorf("get of missing key %s succeeded; expected NOT_FOUND", key)
	}
	st := status.Convert(err)
	switch {
	case st.Code() == codes.NotFound:
		return fmt.Sprintf("key=%s -> %s: %s", key, codeName(st.Code()), st.Message()), nil
	case kvProfile == "lenient":
		return fmt.Sprintf("key=%s lenient: %s instead of NOT_FOUND: %s", key, codeName(st.Code()), st.Message()), nil
	}
	return "", fmt.Errorf("get of missing key %s: expected NOT_FOUND, got %s", key, rpcError(err))
}
