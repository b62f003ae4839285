package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/go-plugin"
)

// reattachJSON is the reattach config as printed by `rpc server-start --debug`
// and read by `--reattach`: go-plugin's ReattachConfig with the address as
// {"Network","String"}, the shape of Terraform's TF_REATTACH_PROVIDERS values.
type reattachJSON struct {
	Protocol        string `json:"Protocol"`
	ProtocolVersion int    `json:"ProtocolVersion"`
	Pid             int    `json:"Pid"`
	Test            bool   `json:"Test"`
	Addr            struct {
		Network string `json:"Network"`
		String  string `json:"String"`
	} `json:"Addr"`
}

// formatReattach is the one compact JSON line a debug plugin prints.
func formatReattach(rc *plugin.ReattachConfig) (string, error) {
	var j reattachJSON
	j.Protocol = string(rc.Protocol)
	j.ProtocolVersion = rc.ProtocolVersion
	j.Pid = rc.Pid
	j.Test = rc.Test
	j.Addr.Network = rc.Addr.Network()
	j.Addr.String = rc.Addr.String()
	b, err := json.Marshal(j)
	return string(b), err
}

// parseReattach reads a --reattach value into go-plugin's ReattachConfig.
func parseReattach(s string) (*plugin.ReattachConfig, error) {
	var j reattachJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return nil, fmt.Errorf("not a JSON reattach config: %v", err)
	}
	if j.Protocol != string(plugin.ProtocolGRPC) {
		return nil, fmt.Errorf("unsupported plugin protocol %q (soup-go speaks grpc only)", j.Protocol)
	}
	if j.ProtocolVersion < 1 {
		return nil, errors.New("ProtocolVersion must be a positive integer")
	}
	if j.Pid < 1 {
		return nil, errors.New("Pid must be a positive integer")
	}
	if j.Addr.String == "" {
		return nil, errors.New("Addr.String is empty")
	}
	var addr net.Addr
	switch j.Addr.Network {
	case "unix":
		addr = &net.UnixAddr{Name: j.Addr.String, Net: "unix"}
	case "tcp":
		tcp, err := net.ResolveTCPAddr("tcp", j.Addr.String)
		if err != nil {
			return nil, fmt.Errorf("Addr: %v", err)
		}
		addr = tcp
	default:
		return nil, fmt.Errorf("unknown Addr.Network %q (unix or tcp)", j.Addr.Network)
	}
	return &plugin.ReattachConfig{
		Protocol:        plugin.ProtocolGRPC,
		ProtocolVersion: j.ProtocolVersion,
		Pid:             j.Pid,
		Test:            j.Test,
		Addr:            addr,
	}, nil
}
