package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	// With --concurrency: that many connections, each timing --count round trips at once.
	Concurrency int     `json:"concurrency"`
	OpsPerS     float64 `json:"ops_per_s"`
	// The resident set (VmRSS, KiB) of the plugin and its child processes after the
	// warm-up and after the timed calls.
	PluginRSSKiB map[string]int64 `json:"plugin_rss_kib,omitempty"`
	// The CPU time (user+sys, from /proc) of the plugin and its child processes per
	// timed round trip: unlike wall time it hardly depends on how busy the machine is.
	// 0 where there is no /proc.
	PluginCPUUSPerOp float64 `json:"plugin_cpu_us_per_op"`
}

func clientBench(args []string, stdout, stderr io.Writer) int {
	c := newCommand("rpc client bench", "--server CMD [flags]", `
Act as a go-plugin host like 'rpc client test', connect once, then time round
trips of Put(key "bench-<i % 16>", 64 bytes) + Get(same key): --warmup untimed,
then --count timed. Reports mean, p50, p90, p99, min and max in microseconds.
--concurrency N opens N connections to the plugin and runs them at once (each
--warmup + --count round trips), adding ops/s and the plugin's RSS before and after.`,
		`soup-go rpc client bench --count 2000 --json --server 'soup-go rpc server-start'`)
	var (
		hf                         hostFlags
		asJSON                     bool
		count, warmup, concurrency int
	)
	hf.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	c.fs.IntVar(&count, "count", 1000, "timed round trips")
	c.fs.IntVar(&warmup, "warmup", 50, "untimed round trips first")
	c.fs.IntVar(&concurrency, "concurrency", 1, "connections used at once, each doing --count")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := hf.validate(); err != nil {
			return 2, err
		}
		if count < 1 || warmup < 0 || concurrency < 1 {
			return 2, usagef("--count and --concurrency must be >= 1 and --warmup >= 0")
		}
		res := runBench(hf.options(), stderr, count, warmup, concurrency)
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

func runBench(opts hostOptions, logOut io.Writer, count, warmup, concurrency int) *BenchResult {
	tr := newResult(opts.tls.mode)
	if opts.tls.mode != "disabled" {
		tr.TLS.Backend = strp("go")
	}
	res := &BenchResult{Count: count, Client: tr.Client, Concurrency: concurrency}
	var samples []float64
	var wall time.Duration
	err := withPlugin(opts, logOut, func(h *host) error {
		h.ownCertEvidence(tr)
		clients := []kvpb.KVClient{h.kv.kv}
		for len(clients) < concurrency {
			conn, err := h.extraConn()
			if err != nil {
				return err
			}
			defer conn.Close()
			clients = append(clients, kvpb.NewKVClient(conn))
		}
		var rssBefore int64
		var cpuBefore float64
		var err error
		samples, wall, rssBefore, cpuBefore, err = loadRun(clients, count, warmup, tr, h)
		if err != nil {
			return err
		}
		res.PluginRSSKiB = map[string]int64{"before": rssBefore, "after": rssKiB(h.pid())}
		if cpuBefore >= 0 {
			used := cpuSeconds(h.pid()) - cpuBefore
			res.PluginCPUUSPerOp = math.Round(used/float64(len(samples))*1e7) / 10
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
	res.OpsPerS = math.Round(float64(len(samples))/wall.Seconds()*10) / 10
	return res
}

// loadRun runs one worker per client: warm-up, then (all together) the timed
// round trips. Every call must succeed; the first failure is returned.
func loadRun(clients []kvpb.KVClient, count, warmup int, tr *Result, h *host) ([]float64, time.Duration, int64, float64, error) {
	var warm, done sync.WaitGroup
	start := make(chan struct{})
	results := make([][]float64, len(clients))
	errs := make([]error, len(clients))
	value := make([]byte, 64)
	for w, kv := range clients {
		warm.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			samples := make([]float64, 0, count)
			for i := 0; i < warmup+count; i++ {
				if i == warmup {
					warm.Done()
					<-start
				}
				key := fmt.Sprintf("bench-%d-%d", w, i%16)
				var p peer.Peer
				t0 := time.Now()
				ctx, cancel := h.rpcCtx()
				_, err := kv.Put(ctx, &kvpb.PutRequest{Key: key, Value: value}, grpc.Peer(&p))
				if err == nil {
					_, err = kv.Get(ctx, &kvpb.GetRequest{Key: key})
				}
				cancel()
				if err == nil && w == 0 && i == 0 {
					err = peerEvidence(&p, tr)
				}
				if err != nil {
					errs[w] = fmt.Errorf("connection %d, round trip %d: %w", w, i, grpcErr(err))
					if i < warmup {
						warm.Done()
					}
					return
				}
				if i >= warmup {
					samples = append(samples, float64(time.Since(t0).Nanoseconds())/1000)
				}
			}
			results[w] = samples
		}()
	}
	warm.Wait()
	pid := h.pid()
	rssBefore := rssKiB(pid)
	cpuBefore := cpuSeconds(pid)
	t0 := time.Now()
	close(start)
	done.Wait()
	wall := time.Since(t0)
	var all []float64
	for w := range clients {
		if errs[w] != nil {
			return nil, 0, 0, 0, errs[w]
		}
		all = append(all, results[w]...)
	}
	return all, wall, rssBefore, cpuBefore, nil
}

// processTree is pid and its descendants (from /proc/PID/task/TID/children): a plugin's
// helper processes (soup's TLS bridge process) count as the plugin's.
func processTree(pid int) []int {
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", tree[i]))
		for _, task := range tasks {
			data, err := os.ReadFile(task)
			if err != nil {
				continue
			}
			for _, field := range strings.Fields(string(data)) {
				if child, err := strconv.Atoi(field); err == nil {
					tree = append(tree, child)
				}
			}
		}
	}
	return tree
}

// cpuSeconds is the user+system CPU time of pid's process tree from /proc/PID/stat
// (-1 without /proc).
func cpuSeconds(pid int) float64 {
	total := 0.0
	for i, p := range processTree(pid) {
		used := processCPUSeconds(p)
		if used < 0 && i == 0 {
			return -1
		}
		total += max(used, 0)
	}
	return total
}

func processCPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return -1
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // clock ticks: USER_HZ is 100 on Linux
}

// extraConn opens one more connection to the plugin, with the session's TLS config.
func (h *host) extraConn() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if h.cfg.TLSConfig != nil {
		creds = credentials.NewTLS(h.cfg.TLSConfig)
	}
	addr := h.addr
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, addr.Network(), addr.String())
	}
	return grpc.NewClient("passthrough:///plugin", grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dial))
}

// rssKiB is the VmRSS of pid's process tree from /proc (0 where there is no /proc).
func rssKiB(pid int) int64 {
	var total int64
	for _, p := range processTree(pid) {
		total += processRSSKiB(p)
	}
	return total
}

func processRSSKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	return 0
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
