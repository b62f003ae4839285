package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"reflect"
	"testing"

	"soup-go/kvpb"
)

func TestRequireBrokerClientCertsMakesTheHostConfigMutualForListening(t *testing.T) {
	roots := x509.NewCertPool()
	cfg := &tls.Config{RootCAs: roots}
	requireBrokerClientCerts(cfg)
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("ClientAuth = %v, want RequireAndVerifyClientCert", cfg.ClientAuth)
	}
	if cfg.ClientCAs != roots {
		t.Fatal("ClientCAs must be the pinned plugin cert pool (RootCAs)")
	}
	own := x509.NewCertPool()
	cfg = &tls.Config{RootCAs: roots, ClientCAs: own}
	requireBrokerClientCerts(cfg)
	if cfg.ClientCAs != own {
		t.Fatal("an existing ClientCAs pool must be kept")
	}
	requireBrokerClientCerts(nil) // plaintext: nothing to do, no panic
}

func TestAddHelperSumsAndRecordsEveryCall(t *testing.T) {
	a := &addHelper{}
	for _, in := range [][2]int64{{0, 5}, {5, 7}} {
		resp, err := a.Sum(context.Background(), &kvpb.SumRequest{A: in[0], B: in[1]})
		if err != nil || resp.GetR() != in[0]+in[1] {
			t.Fatalf("Sum(%d, %d) = %v, %v", in[0], in[1], resp, err)
		}
	}
	if got := a.seen(); !reflect.DeepEqual(got, [][]int64{{0, 5}, {5, 7}}) {
		t.Fatalf("calls = %v", got)
	}
}

func TestCounterGetOfANewKeyIsZero(t *testing.T) {
	s := &counterServer{totals: map[string]int64{"k": 9}}
	for key, want := range map[string]int64{"k": 9, "new": 0} {
		resp, err := s.Get(context.Background(), &kvpb.CounterGetRequest{Key: key})
		if err != nil || resp.GetValue() != want {
			t.Fatalf("Get(%s) = %v, %v; want %d", key, resp, err, want)
		}
	}
}
