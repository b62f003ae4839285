package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"soup-go/kvpb"
)

// BenchResult is what `rpc client bench --json` prints.
type BenchResult struct {
	OK          bool               `json:"ok"`
	Error       *string            `json:"error"`
	Count       int                `json:"count"`
	Client      ImplInfo           `json:"client"`
	TLS         TLSResult          `json:"tls"`
	RoundTripUS map[string]float64 `json:"round_trip_us"`
}

func clientBench(args []string, stdout, stderr io.Writer) int {
	c := newCommand("rpc client bench", "--server CMD [flags]", `
Act as a go-plugin host like 'rpc client test', connect once, then time round
trips of Put(key "bench-<i % 16>", 64 bytes) + Get(same key): --warmup untimed,
then --count timed. Reports mean, p50, p90, p99, min and max in microseconds.`,
		`soup-go rpc client bench --count 2000 --json --server 'soup-go rpc server-start'`)
	var (
		hf            hostFlags
		asJSON        bool
		count, warmup int
	)
	hf.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	c.fs.IntVar(&count, "count", 1000, "timed round trips")
	c.fs.IntVar(&warmup, "warmup", 50, "untimed round trips first")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		if count < 1 || warmup < 0 {
			return 2, usagef("--count must be >= 1 and --warmup >= 0")
		}
		res := runBench(hf.options(), stderr, count, warmup)
		if asJSON {
			b, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", b)
		} else if res.OK {
			s := res.RoundTripUS
			fmt.Fprintf(stdout, "bench %d round trips (Put+Get) tls=%s: mean %.1f us p50 %.1f p90 %.1f p99 %.1f min %.1f max %.1f\n",
				count, res.TLS.Mode, s["mean"], s["p50"], s["p90"], s["p99"], s["min"], s["max"])
		} else {
			fmt.Fprintf(stdout, "bench FAIL: %s\n", *res.Error)
		}
		if !res.OK {
			return 1, nil
		}
		return 0, nil
	})
}

func runBench(opts hostOptions, logOut io.Writer, count, warmup int) *BenchResult {
	tr := newResult(opts.tls.mode)
	if opts.tls.mode != "disabled" {
		tr.TLS.Backend = strp("go")
	}
	res := &BenchResult{Count: count, Client: tr.Client}
	value := make([]byte, 64)
	samples := make([]float64, 0, count)
	err := withPlugin(opts, logOut, func(h *host) error {
		h.ownCertEvidence(tr)
		for i := 0; i < warmup+count; i++ {
			key := fmt.Sprintf("bench-%d", i%16)
			var p peer.Peer
			t0 := time.Now()
			ctx, cancel := rpcCtx()
			_, err := h.kv.kv.Put(ctx, &kvpb.PutRequest{Key: key, Value: value}, grpc.Peer(&p))
			if err == nil {
				_, err = h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: key})
			}
			cancel()
			if err != nil {
				return grpcErr(err)
			}
			if i == 0 {
				if err := peerEvidence(&p, tr); err != nil {
					return err
				}
			}
			if i >= warmup {
				samples = append(samples, float64(time.Since(t0).Nanoseconds())/1000)
			}
		}
		return nil
	})
	res.TLS = tr.TLS
	if err != nil {
		msg := err.Error()
		res.Error = &msg
		return res
	}
	res.OK = true
	res.RoundTripUS = stats(samples)
	return res
}

// stats: nearest-rank percentiles, rounded to 0.1 us.
func stats(s []float64) map[string]float64 {
	sort.Float64s(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	r := func(v float64) float64 { return math.Round(v*10) / 10 }
	return map[string]float64{
		"mean": r(sum / float64(len(s))), "p50": r(pct(50)), "p90": r(pct(90)), "p99": r(pct(99)),
		"min": r(s[0]), "max": r(s[len(s)-1]),
	}
}
