package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"soup-go/kvpb"
)

const counterKey = "soup-counter"

// CallbackResult is the one JSON object `rpc client callback-test --json`
// prints; the same fields as the Python soup's.
type CallbackResult struct {
	OK               bool      `json:"ok"`
	Error            *string   `json:"error"`
	Client           ImplInfo  `json:"client"`
	Server           ImplInfo  `json:"server"`
	TLSMode          string    `json:"tls_mode"`
	ClientKey        *string   `json:"client_key"`
	ServerKey        *string   `json:"server_key"`
	Transport        *string   `json:"transport"`
	Values           []int64   `json:"values"`
	Total            *int64    `json:"total"`
	HostHelperCalls  [][]int64 `json:"host_helper_calls"`
	PluginHelperSum  *int64    `json:"plugin_helper_sum"`
	Steps            []Step    `json:"steps"`
	PluginStderrTail string    `json:"plugin_stderr_tail"`
}

func clientCallbackTest(args []string, stdout, stderr io.Writer) int {
	c := newCommand("rpc client callback-test", "--server CMD [flags]", `
Act as a go-plugin host (hashicorp/go-plugin, its own GRPCBroker) and prove
broker callbacks both ways with the counter demo (go-plugin's
examples/bidirectional): steps spawn, handshake, put and put_again
(Counter.Put; the plugin calls the host's AddHelper.Sum through the broker),
get (the total is the sum), host_helper (the host's AddHelper saw exactly
those Sum calls), plugin_helper (Counter.OpenAdder: the host dials the
plugin's AddHelper through the broker), shutdown. Every soup and soup-go
'rpc server-start' plugin serves the counter demo. Exit 0 pass, 1 fail, 2 usage.`,
		`soup-go rpc client callback-test --json --server 'python -m soup rpc server-start'`)
	var (
		hf     hostFlags
		asJSON bool
	)
	hf.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON result object instead of step lines")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		res := runCallbackTest(hf.options(), stderr)
		if asJSON {
			if err := writeOneJSON(stdout, res); err != nil {
				return 1, err
			}
		} else {
			writeSteps(stdout, res.Steps, 13)
			if res.OK {
				fmt.Fprintln(stdout, "RESULT: PASS")
			} else {
				fmt.Fprintf(stdout, "RESULT: FAIL: %s\n", *res.Error)
			}
		}
		if !res.OK {
			return 1, nil
		}
		return 0, nil
	})
}

// callbackSession is one callback-test run against one plugin.
type callbackSession struct {
	h       *host
	counter *counterClient
	helper  *addHelper
	res     *CallbackResult
}

// runCallbackTest runs the steps, stops at the first failure and always
// ends the plugin.
func runCallbackTest(opts hostOptions, logOut io.Writer) *CallbackResult {
	res := &CallbackResult{Steps: []Step{}, Values: []int64{randValue(), randValue()}, TLSMode: opts.tls.mode}
	res.Client = ImplInfo{Impl: strp("go"), Version: strp(versionString())}
	res.HostHelperCalls = [][]int64{}
	h, err := newHost(opts, logOut)
	if err != nil {
		res.Error = strp("spawn: " + err.Error())
		res.Steps = append(res.Steps, Step{Name: "spawn", Detail: err.Error()})
		return res
	}
	s := &callbackSession{h: h, helper: &addHelper{}, res: res}
	stopped := false
	defer func() {
		if !stopped {
			h.stop()
		}
		res.HostHelperCalls = s.helper.seen()
		res.PluginStderrTail = h.stderr.String()
		res.Server = h.ident.identity()
	}()
	a, b := res.Values[0], res.Values[1]
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"spawn", s.spawn},
		{"handshake", s.handshake},
		{"put", func() (string, error) { return s.put(a) }},
		{"put_again", func() (string, error) { return s.put(b) }},
		{"get", func() (string, error) { return s.get(a + b) }},
		{"host_helper", func() (string, error) { return s.hostCalls([][]int64{{0, a}, {a, b}}) }},
		{"plugin_helper", func() (string, error) { return s.pluginSum(a, b) }},
		{"shutdown", func() (string, error) {
			stopped = true
			byItself, detail := h.stop()
			if !byItself {
				return "", errors.New("shutdown: plugin " + detail)
			}
			return detail, nil
		}},
	}
	for _, st := range steps {
		t0 := time.Now()
		detail, err := st.fn()
		ms := float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			res.Steps = append(res.Steps, Step{Name: st.name, MS: ms, Detail: err.Error()})
			res.Error = strp(st.name + ": " + err.Error())
			return res
		}
		res.Steps = append(res.Steps, Step{Name: st.name, OK: true, MS: ms, Detail: detail})
	}
	res.OK = true
	return res
}

func (s *callbackSession) spawn() (string, error) {
	if err := s.h.start(); err != nil {
		return "", err
	}
	s.res.Transport = strp(s.h.addr.Network())
	requireBrokerClientCerts(s.h.cfg.TLSConfig)
	return fmt.Sprintf("pid %d", s.h.pid()), nil
}

// requireBrokerClientCerts makes the host's TLSConfig fit for listening too:
// go-plugin's AcceptAndServe serves with the host's TLSConfig. AutoMTLS's
// config already requires client certs verified against the pinned plugin
// cert; the one soup-go builds for other key types (and manual mode) was
// made for dialing only, and would let a brokered listener accept a peer
// without a certificate.
func requireBrokerClientCerts(cfg *tls.Config) {
	if cfg == nil {
		return
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	if cfg.ClientCAs == nil {
		cfg.ClientCAs = cfg.RootCAs
	}
}

func (s *callbackSession) handshake() (string, error) {
	if err := s.h.connect(); err != nil {
		s.h.terminate()
		return "", err
	}
	rpc, err := s.h.client.Client()
	if err != nil {
		return "", err
	}
	raw, err := rpc.Dispense(counterPluginName)
	if err != nil {
		return "", err
	}
	s.counter = raw.(*counterClient)
	if s.h.cfg.TLSConfig != nil && len(s.h.cfg.TLSConfig.Certificates) > 0 {
		if leaf, err := leafOf(s.h.cfg.TLSConfig.Certificates[0]); err == nil {
			s.res.ClientKey = strp(keyTypeOf(leaf))
		}
	}
	return fmt.Sprintf("%s %s; broker stream open", s.h.addr.Network(), s.h.addr), nil
}

// put is one Counter.Put with a fresh AddHelper served through the broker,
// as go-plugin's bidirectional example does.
func (s *callbackSession) put(value int64) (string, error) {
	broker := s.counter.broker
	id := broker.NextId()
	created := make(chan *grpc.Server, 1)
	go broker.AcceptAndServe(id, s.helper.newServer(created))
	defer func() {
		select {
		case srv := <-created:
			srv.Stop()
		case <-time.After(brokerRPCTimeout):
		}
	}()
	ctx, cancel := callbackCtx()
	defer cancel()
	resp, err := s.counter.counter.Put(ctx, &kvpb.CounterPutRequest{AddServer: id, Key: counterKey, Value: value})
	if err != nil {
		return "", rpcError(err)
	}
	return fmt.Sprintf("Put(%s, %d) -> total %d", counterKey, value, resp.GetTotal()), nil
}

func (s *callbackSession) get(want int64) (string, error) {
	ctx, cancel := callbackCtx()
	defer cancel()
	var p peer.Peer
	resp, err := s.counter.counter.Get(ctx, &kvpb.CounterGetRequest{Key: counterKey}, grpc.Peer(&p))
	if err != nil {
		return "", rpcError(err)
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
		s.res.ServerKey = strp(keyTypeOf(info.State.PeerCertificates[0]))
	}
	got := resp.GetValue()
	s.res.Total = &got
	if got != want {
		return "", fmt.Errorf("Get(%s) = %d, expected %d", counterKey, got, want)
	}
	return fmt.Sprintf("Get(%s) = %d", counterKey, got), nil
}

func (s *callbackSession) hostCalls(want [][]int64) (string, error) {
	calls := s.helper.seen()
	if !reflect.DeepEqual(calls, want) {
		return "", fmt.Errorf("the host's AddHelper saw Sum calls %v, expected %v", calls, want)
	}
	return fmt.Sprintf("the host's AddHelper served %d Sum calls from the plugin: %v", len(calls), calls), nil
}

func (s *callbackSession) pluginSum(a, b int64) (string, error) {
	ctx, cancel := callbackCtx()
	defer cancel()
	opened, err := s.counter.counter.OpenAdder(ctx, &kvpb.OpenAdderRequest{})
	if err != nil {
		return "", rpcError(err)
	}
	conn, err := s.counter.broker.Dial(opened.GetAddServer())
	if err != nil {
		return "", fmt.Errorf("broker: %w", err)
	}
	defer func() { _ = conn.Close() }()
	resp, err := kvpb.NewAddHelperClient(conn).Sum(ctx, &kvpb.SumRequest{A: a, B: b})
	if err != nil {
		return "", rpcError(err)
	}
	got := resp.GetR()
	s.res.PluginHelperSum = &got
	if got != a+b {
		return "", fmt.Errorf("the plugin's AddHelper returned Sum(%d, %d) = %d", a, b, got)
	}
	return fmt.Sprintf("the plugin's AddHelper, dialled by the host: Sum(%d, %d) = %d", a, b, got), nil
}

// callbackCtx bounds one counter call: a Put includes the plugin's broker
// Dial (which waits up to 5 s for the ConnInfo) and its Sum call.
func callbackCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*brokerRPCTimeout)
}

// randValue is a value in 1..1000000, so no result can be typed in.
func randValue() int64 {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return 1
	}
	return n.Int64() + 1
}
