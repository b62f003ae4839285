package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"soup-go/kvpb"
)

// The broker callback demo (proto/counter.proto), modelled on go-plugin's
// examples/bidirectional and built on go-plugin's own GRPCBroker: the
// plugin's Counter.Put dials the host's AddHelper by the id in the request
// and stores Sum(total, value); Counter.OpenAdder serves an AddHelper of the
// plugin's own through the broker and returns its id for the host to dial.

// counterPluginName is the counter demo's key in the plugin set.
const counterPluginName = "counter"

// brokerRPCTimeout bounds one call over a brokered connection.
const brokerRPCTimeout = 5 * time.Second

// counterPlugin is the go-plugin GRPCPlugin of the counter demo.
type counterPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (p *counterPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	kvpb.RegisterCounterServer(s, &counterServer{broker: b, totals: map[string]int64{}})
	return nil
}

func (p *counterPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &counterClient{broker: b, counter: kvpb.NewCounterClient(c)}, nil
}

// counterClient is what the host gets from Dispense("counter").
type counterClient struct {
	broker  *plugin.GRPCBroker
	counter kvpb.CounterClient
}

// counterServer keeps the totals in memory; sums come from the peer.
type counterServer struct {
	kvpb.UnimplementedCounterServer
	broker *plugin.GRPCBroker
	mu     sync.Mutex
	totals map[string]int64
}

func (s *counterServer) Put(ctx context.Context, req *kvpb.CounterPutRequest) (*kvpb.CounterPutResponse, error) {
	s.mu.Lock()
	current := s.totals[req.GetKey()]
	s.mu.Unlock()
	conn, err := s.broker.Dial(req.GetAddServer())
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, brokerRPCTimeout)
	defer cancel()
	resp, err := kvpb.NewAddHelperClient(conn).Sum(ctx, &kvpb.SumRequest{A: current, B: req.GetValue()})
	if err != nil {
		return nil, fmt.Errorf("AddHelper.Sum on the host failed: %w", err)
	}
	s.mu.Lock()
	s.totals[req.GetKey()] = resp.GetR()
	s.mu.Unlock()
	return &kvpb.CounterPutResponse{Total: resp.GetR()}, nil
}

func (s *counterServer) Get(_ context.Context, req *kvpb.CounterGetRequest) (*kvpb.CounterGetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &kvpb.CounterGetResponse{Value: s.totals[req.GetKey()]}, nil
}

// OpenAdder serves an AddHelper through the broker until the broker closes.
func (s *counterServer) OpenAdder(_ context.Context, _ *kvpb.OpenAdderRequest) (*kvpb.OpenAdderResponse, error) {
	id := s.broker.NextId()
	go s.broker.AcceptAndServe(id, (&addHelper{}).newServer(nil))
	return &kvpb.OpenAdderResponse{AddServer: id}, nil
}

// addHelper is /counter.AddHelper; it records its calls, the proof that a
// callback arrived.
type addHelper struct {
	kvpb.UnimplementedAddHelperServer
	mu    sync.Mutex
	calls [][]int64
}

func (a *addHelper) Sum(_ context.Context, req *kvpb.SumRequest) (*kvpb.SumResponse, error) {
	a.mu.Lock()
	a.calls = append(a.calls, []int64{req.GetA(), req.GetB()})
	a.mu.Unlock()
	return &kvpb.SumResponse{R: req.GetA() + req.GetB()}, nil
}

func (a *addHelper) seen() [][]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]int64{}, a.calls...)
}

// newServer is the server factory AcceptAndServe wants (it passes the
// broker's TLS options); the server is also sent to created, if given.
func (a *addHelper) newServer(created chan<- *grpc.Server) func([]grpc.ServerOption) *grpc.Server {
	return func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		kvpb.RegisterAddHelperServer(s, a)
		if created != nil {
			created <- s
		}
		return s
	}
}
