package main

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"soup-go/kvpb"
)

// kvServer serves /proto.KV over a fileStore.
type kvServer struct {
	kvpb.UnimplementedKVServer
	store *fileStore
}

func (s *kvServer) Get(_ context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	v, err := s.store.Get(req.GetKey())
	if err != nil {
		return nil, storeStatus(err)
	}
	return &kvpb.GetResponse{Value: v}, nil
}

func (s *kvServer) Put(_ context.Context, req *kvpb.PutRequest) (*kvpb.Empty, error) {
	if err := s.store.Put(req.GetKey(), req.GetValue()); err != nil {
		return nil, storeStatus(err)
	}
	return &kvpb.Empty{}, nil
}

// storeStatus maps store errors to the gRPC codes and messages of the shared
// contract (the conformance tests compare them across implementations).
func storeStatus(err error) error {
	var tooLong keyTooLongError
	switch {
	case errors.Is(err, errEmptyKey), errors.As(err, &tooLong):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errKeyNotFound):
		return status.Error(codes.NotFound, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// kvPlugin is the go-plugin GRPCPlugin for the KV service. store is only set
// on the plugin side.
type kvPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	store *fileStore
}

func (p *kvPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	kvpb.RegisterKVServer(s, &kvServer{store: p.store})
	return nil
}

// GRPCClient hands back the connection too: the host runs the health check
// on the very connection go-plugin dialed, and reads its TLS state.
func (p *kvPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &kvClient{conn: c, kv: kvpb.NewKVClient(c)}, nil
}

// kvClient is what the host gets from Dispense("kv").
type kvClient struct {
	conn *grpc.ClientConn
	kv   kvpb.KVClient
}

// codeNames spells gRPC codes as grpc.StatusCode names in Python, so that
// both implementations print the same error lines.
var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return c.String()
}
