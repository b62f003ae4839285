//go:build goplugin_v1_4

package main

import (
	"errors"
	"os"

	"github.com/hashicorp/go-plugin"
)

// setHostEnv: go-plugin v1.4 has no SkipHostEnv and always appends
// os.Environ() after cmd.Env, so the one variable that must not leak, a
// stray PLUGIN_CLIENT_CERT asking for TLS, is removed from soup-go's own
// environment instead (cmd.Env, built before, keeps what the host chose).
func setHostEnv(_ *plugin.ClientConfig) {
	_ = os.Unsetenv("PLUGIN_CLIENT_CERT")
}

// setBrokerMultiplex: go-plugin v1.4 has no GRPCBrokerMultiplex.
func setBrokerMultiplex(_ *plugin.ClientConfig) error {
	return errors.New("--grpc-broker-multiplex needs go-plugin v1.6.0 or later; this soup-go is built on v1.4")
}
