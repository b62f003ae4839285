package main

// Every use of a go-plugin API that changed across the releases soup-go is
// built against lives here or in goplugin_v14.go / goplugin_v15plus.go (build
// tag goplugin_v1_4 picks one of those two for ClientConfig.SkipHostEnv, v1.5.0+):
//   - ClientConfig.GRPCDialOptions,
//   - ServeConfig.Test / ServeTestConfig (debug mode, reattach config).
// ClientConfig.GRPCBrokerMultiplex (v1.6.0+) is set in goplugin_v15plus.go.
// soup-go does not use ClientConfig.UnixSocketConfig:
// the private socket directory is set through PLUGIN_UNIX_SOCKET_DIR in the
// plugin's environment, which every release's plugin side reads.

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// setDialOptions adds gRPC dial options to go-plugin's own.
func setDialOptions(cfg *plugin.ClientConfig, opts ...grpc.DialOption) {
	cfg.GRPCDialOptions = append(cfg.GRPCDialOptions, opts...)
}

// setDebugServe puts Serve in go-plugin's test mode: no cookie check, no
// handshake line, the reattach config sent on reattach, serving until ctx
// ends (or Shutdown), closed is closed when Serve is done.
func setDebugServe(cfg *plugin.ServeConfig, ctx context.Context, reattach chan<- *plugin.ReattachConfig, closed chan<- struct{}) {
	cfg.Test = &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
}
