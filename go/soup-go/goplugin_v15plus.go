//go:build !goplugin_v1_4

package main

import "github.com/hashicorp/go-plugin"

// setHostEnv makes cmd.Env the plugin's whole environment: go-plugin
// v1.5+ (SkipHostEnv) then adds only its own variables, so a stray
// PLUGIN_CLIENT_CERT in soup-go's environment cannot ask for TLS.
func setHostEnv(cfg *plugin.ClientConfig) {
	cfg.SkipHostEnv = true
}

// setBrokerMultiplex: go-plugin's GRPCBrokerMultiplex (v1.6.0+; soup-go is
// not built on v1.5).
func setBrokerMultiplex(cfg *plugin.ClientConfig) error {
	cfg.GRPCBrokerMultiplex = true
	return nil
}
