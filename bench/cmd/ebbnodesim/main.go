// Command ebbnodesim measures one real control plane against many simulated
// node agents (bench/nodesim) on one real Redis, for issue 18's scale
// figures:
//
//	make build && cd bench && go run ./cmd/ebbnodesim -ebbd ../bin/ebbd -nodes 1000 -functions 10000
//
// It starts redis-server (AOF, appendfsync always, as internal/testenv
// does) and `ebbd --role controlplane`, registers the nodes, deploys the
// functions through the API with scale.min 1, and reports, per phase
// (nodes idle, deploying, steady after), Redis CPU and ops/s, event-stream
// bytes per second and what Redis sent its clients per node per second,
// and the placement latency: from a function's PUT answer to its node
// seeing the assignment. Every phase is bounded in time; the whole run by
// -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bench/nodesim"
	redisstore "github.com/ebbrun/ebb/store/redis"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ebbnodesim:", err)
		os.Exit(1)
	}
}

type options struct {
	ebbd, redisServer string
	nodes, functions  int
	concurrency       int
	phase, timeout    time.Duration
	out               string
}

// quiet drops go-redis's own log lines: closing a watch's connection to
// stop it, 2,000 times at the end of a run, is not news.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func run() error {
	goredis.SetLogger(quiet{})
	var o options
	flag.StringVar(&o.ebbd, "ebbd", "../bin/ebbd", "the ebbd binary")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "the redis-server binary")
	flag.IntVar(&o.nodes, "nodes", 1000, "simulated node agents")
	flag.IntVar(&o.functions, "functions", 10000, "functions to deploy, each with scale.min 1")
	flag.IntVar(&o.concurrency, "concurrency", 8, "deploys in flight at once")
	flag.DurationVar(&o.phase, "phase", 20*time.Second, "length of the idle and steady measurement windows")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.StringVar(&o.out, "out", "", "also write the report as JSON to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "ebbnodesim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	redisAddr, redisProc, err := startRedis(ctx, o.redisServer, dir)
	if err != nil {
		return err
	}
	defer stopProc(redisProc)
	url := "redis://" + redisAddr + "/0"
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer rdb.Close()

	st, err := redisstore.Open(ctx, url, redisstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	// The leases get a connection pool of their own: a real agent's
	// renewals never wait behind another node's transactions.
	leases, err := redisstore.Open(ctx, url, redisstore.Options{})
	if err != nil {
		return err
	}
	defer leases.Close()

	cp, err := startControlPlane(ctx, o.ebbd, url, dir)
	if err != nil {
		return err
	}
	defer stopProc(cp.proc)

	var (
		mu       sync.Mutex
		putAt    = map[string]time.Time{}
		assigned = map[string]time.Time{}
		readyAt  = map[string]time.Time{}
		nAssign  atomic.Int64
		nReady   atomic.Int64
	)
	sim := nodesim.New(nodesim.Config{
		Nodes: o.nodes, CPU: 64, MemoryBytes: 256 << 30,
		OnAssigned: func(_, rev string, at time.Time) {
			mu.Lock()
			if _, ok := assigned[rev]; !ok {
				assigned[rev] = at
				nAssign.Add(1)
			}
			mu.Unlock()
		},
		OnReady: func(_, rev string, at time.Time) {
			mu.Lock()
			if _, ok := readyAt[rev]; !ok {
				readyAt[rev] = at
				nReady.Add(1)
			}
			mu.Unlock()
		},
	}, st, leases)
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan struct{})
	go func() { sim.Run(simCtx); close(simDone) }()
	defer func() { stopSim(); <-simDone }()

	rep := report{Nodes: o.nodes, Functions: o.functions}
	t0 := time.Now()
	if err := waitFor(ctx, 2*time.Minute, func() bool { return sim.Stats.Registered.Load() == int64(o.nodes) }); err != nil {
		return fmt.Errorf("registering %d nodes: %w (%d registered)", o.nodes, err, sim.Stats.Registered.Load())
	}
	rep.RegisterSeconds = time.Since(t0).Seconds()
	fmt.Printf("%d nodes registered in %.1fs\n", o.nodes, rep.RegisterSeconds)

	// Phase 1: the nodes alone (leases, idle watches).
	idle, err := measure(ctx, "nodes idle", rdb, cp.proc.Process.Pid, redisProc.Process.Pid, o.nodes, func(ctx context.Context) error {
		return sleep(ctx, o.phase)
	})
	if err != nil {
		return err
	}
	rep.Phases = append(rep.Phases, idle)

	// Phase 2: deploy every function with scale.min 1.
	client, err := api.NewClient("http://"+cp.apiAddr, cp.token)
	if err != nil {
		return err
	}
	var putErrs atomic.Int64
	var firstErr atomic.Value
	deploy, err := measure(ctx, "deploy", rdb, cp.proc.Process.Pid, redisProc.Process.Pid, o.nodes, func(ctx context.Context) error {
		next := atomic.Int64{}
		var wg sync.WaitGroup
		for range o.concurrency {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= o.functions || ctx.Err() != nil {
						return
					}
					name := fmt.Sprintf("fn%05d", i)
					spec := api.FunctionSpec{
						Image:     "localhost:5000/sim/hello:v1",
						Resources: api.Resources{CPU: 0.1, Memory: "128Mi"},
						Scale:     api.Scale{Min: 1},
					}
					fn, _, err := client.PutFunction(ctx, name, spec)
					if err != nil {
						if putErrs.Add(1) == 1 {
							firstErr.Store(err.Error())
						}
						continue
					}
					mu.Lock()
					putAt[fn.LatestRevision] = time.Now()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		want := int64(o.functions) - putErrs.Load()
		return waitFor(ctx, o.timeout/2, func() bool { return nReady.Load() >= want })
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy phase: %v (assigned %d, ready %d)\n", err, nAssign.Load(), nReady.Load())
	}
	rep.Phases = append(rep.Phases, deploy)
	rep.PutErrors = putErrs.Load()
	if s, ok := firstErr.Load().(string); ok {
		rep.FirstPutError = s
	}

	// Phase 3: steady state with every function at one replica.
	// The steady window runs even when the deploy used up -timeout, so a
	// run that did not finish still reports what it saw.
	steady, err := measure(context.WithoutCancel(ctx), "steady", rdb, cp.proc.Process.Pid, redisProc.Process.Pid, o.nodes, func(context.Context) error {
		return sleep(context.Background(), o.phase)
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "steady phase: %v\n", err)
	}
	rep.Phases = append(rep.Phases, steady)

	mu.Lock()
	var place, ready []float64
	for rev, at := range putAt {
		if a, ok := assigned[rev]; ok {
			place = append(place, a.Sub(at).Seconds())
		}
		if r, ok := readyAt[rev]; ok {
			ready = append(ready, r.Sub(at).Seconds())
		}
	}
	mu.Unlock()
	rep.Placement = quantiles(place)
	rep.Ready = quantiles(ready)
	rep.Sim = simStats{
		LeaseRenewals: sim.Stats.LeaseRenewals.Load(), LeaseErrors: sim.Stats.LeaseErrors.Load(),
		Txns: sim.Stats.Txns.Load(), TxnErrors: sim.Stats.TxnErrors.Load(),
		ReplicasStarted: sim.Stats.ReplicasStarted.Load(), ReplicasStopped: sim.Stats.ReplicasStopped.Load(),
		WatchUpdates: sim.Stats.Updates.Load(),
	}
	rep.ControlPlaneMetrics = scrapeSome(cp.metricsAddr)
	rep.print(os.Stdout)
	if o.out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type report struct {
	Nodes, Functions    int
	RegisterSeconds     float64
	Phases              []phase
	PutErrors           int64
	FirstPutError       string `json:",omitempty"`
	Placement, Ready    dist
	Sim                 simStats
	ControlPlaneMetrics map[string]float64
}

type simStats struct {
	LeaseRenewals, LeaseErrors, Txns, TxnErrors, ReplicasStarted, ReplicasStopped, WatchUpdates int64
}

type dist struct {
	N                       int
	P50, P90, P99, Max, Avg float64
}

func quantiles(v []float64) dist {
	if len(v) == 0 {
		return dist{}
	}
	slices.Sort(v)
	q := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return dist{N: len(v), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: v[len(v)-1], Avg: sum / float64(len(v))}
}

// phase is what Redis and the control plane did over one window.
type phase struct {
	Name    string
	Seconds float64
	// RedisCPU is the share of one core redis-server used; ControlPlaneCPU
	// likewise for ebbd.
	RedisCPU, ControlPlaneCPU float64
	RedisOpsPerSec            float64
	// StreamEntries and StreamBytes are the events the stream gained and
	// their field bytes (key, value, type, count).
	StreamEntries   int64
	StreamBytes     int64
	StreamBytesPerS float64
	// NetOutPerNodePerS is what Redis sent all its clients, per node and
	// second: with every watch reading the whole stream, about
	// StreamBytesPerS times the watches a node holds.
	NetOutPerS, NetOutPerNodePerS, NetInPerS float64
	Clients                                  int64
}

type sample struct {
	at         time.Time
	redisTicks int64
	cpTicks    int64
	cmds       int64
	netOut     int64
	netIn      int64
	clients    int64
	lastRev    int64
}

func measure(ctx context.Context, name string, rdb *goredis.Client, cpPID, redisPID, nodes int, body func(context.Context) error) (phase, error) {
	fmt.Printf("phase %s...\n", name)
	a, err := take(ctx, rdb, cpPID, redisPID)
	if err != nil {
		return phase{}, err
	}
	berr := body(ctx)
	b, err := take(context.WithoutCancel(ctx), rdb, cpPID, redisPID)
	if err != nil {
		return phase{}, err
	}
	secs := b.at.Sub(a.at).Seconds()
	p := phase{
		Name: name, Seconds: secs,
		RedisCPU:        float64(b.redisTicks-a.redisTicks) / clkTck / secs,
		ControlPlaneCPU: float64(b.cpTicks-a.cpTicks) / clkTck / secs,
		RedisOpsPerSec:  float64(b.cmds-a.cmds) / secs,
		NetOutPerS:      float64(b.netOut-a.netOut) / secs,
		NetInPerS:       float64(b.netIn-a.netIn) / secs,
		Clients:         b.clients,
	}
	p.NetOutPerNodePerS = p.NetOutPerS / float64(nodes)
	p.StreamEntries, p.StreamBytes, err = streamBytes(context.WithoutCancel(ctx), rdb, a.lastRev, b.lastRev)
	if err != nil {
		return p, err
	}
	p.StreamBytesPerS = float64(p.StreamBytes) / secs
	fmt.Printf("  %.1fs redis cpu %.2f ops/s %.0f stream %d entries %.0f B/s, redis out %.0f B/s/node\n",
		secs, p.RedisCPU, p.RedisOpsPerSec, p.StreamEntries, p.StreamBytesPerS, p.NetOutPerNodePerS)
	return p, berr
}

// clkTck is USER_HZ, 100 on every Linux the project runs on.
const clkTck = 100

func take(ctx context.Context, rdb *goredis.Client, cpPID, redisPID int) (sample, error) {
	s := sample{at: time.Now()}
	var err error
	if s.redisTicks, err = procTicks(redisPID); err != nil {
		return s, err
	}
	if s.cpTicks, err = procTicks(cpPID); err != nil {
		return s, err
	}
	info, err := rdb.Info(ctx, "stats", "clients").Result()
	if err != nil {
		return s, fmt.Errorf("redis info: %w", err)
	}
	fields := infoFields(info)
	s.cmds = fields["total_commands_processed"]
	s.netOut = fields["total_net_output_bytes"]
	s.netIn = fields["total_net_input_bytes"]
	s.clients = fields["connected_clients"]
	rev, err := rdb.Get(ctx, redisstore.DefaultPrefix+"rev").Int64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return s, fmt.Errorf("store revision: %w", err)
	}
	s.lastRev = rev
	return s, nil
}

func infoFields(info string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// procTicks is a process's user plus system time in clock ticks.
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

// streamBytes sums the field bytes of the stream entries of revisions
// (from, to].
func streamBytes(ctx context.Context, rdb *goredis.Client, from, to int64) (entries, bytes int64, err error) {
	start := strconv.FormatInt(from+1, 10) + "-0"
	end := strconv.FormatInt(to, 10) + "-18446744073709551615"
	for {
		msgs, err := rdb.XRangeN(ctx, redisstore.DefaultPrefix+"events", start, end, 2000).Result()
		if err != nil {
			return entries, bytes, fmt.Errorf("xrange: %w", err)
		}
		for _, m := range msgs {
			entries++
			for k, v := range m.Values {
				bytes += int64(len(k))
				if s, ok := v.(string); ok {
					bytes += int64(len(s))
				}
			}
		}
		if len(msgs) < 2000 {
			return entries, bytes, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

type proc struct {
	proc                        *exec.Cmd
	apiAddr, metricsAddr, token string
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startRedis(ctx context.Context, bin, dir string) (string, *exec.Cmd, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", rdir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--protected-mode", "yes", "--daemonize", "no", "--maxclients", "10000",
		"--logfile", filepath.Join(rdir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rdb.Close()
	if err := waitFor(ctx, 10*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil }); err != nil {
		stopProc(cmd)
		return "", nil, fmt.Errorf("redis-server did not come up: %w", err)
	}
	return addr, cmd, nil
}

func startControlPlane(ctx context.Context, bin, url, dir string) (*proc, error) {
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "cp")
	cmd := exec.Command(bin, "--role", "controlplane", "--store", url, "--node-name", "cp",
		"--data-dir", data, "--api-addr", apiAddr, "--metrics-addr", metricsAddr)
	logf, err := os.Create(filepath.Join(dir, "ebbd.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ebbd: %w", err)
	}
	p := &proc{proc: cmd, apiAddr: apiAddr, metricsAddr: metricsAddr}
	err = waitFor(ctx, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + apiAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		log, _ := os.ReadFile(logf.Name())
		stopProc(cmd)
		return nil, fmt.Errorf("ebbd not ready: %w\n%s", err, log)
	}
	tok, err := os.ReadFile(filepath.Join(data, "token"))
	if err != nil {
		stopProc(cmd)
		return nil, err
	}
	p.token = strings.TrimSpace(string(tok))
	return p, nil
}

func stopProc(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// scrapeSome reads a few control plane series from /metrics: its
// process's CPU and memory and the store's counters, summed over labels.
func scrapeSome(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		base, _, _ := strings.Cut(name, "{")
		keep := strings.HasPrefix(base, "process_") || strings.HasPrefix(base, "go_goroutines") ||
			strings.HasPrefix(base, "ebb_store_") || strings.HasSuffix(base, "_seconds_sum") || strings.HasSuffix(base, "_seconds_count") ||
			strings.HasPrefix(base, "ebb_autoscaler_decisions_total") || strings.HasPrefix(base, "ebb_autoscaler_unplaced")
		if !keep || strings.Contains(base, "bucket") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			out[base] += v
		}
	}
	return out
}

func (r report) print(w *os.File) {
	fmt.Fprintf(w, "\n%d simulated nodes, %d functions (scale.min 1), put errors %d %s\n", r.Nodes, r.Functions, r.PutErrors, r.FirstPutError)
	fmt.Fprintf(w, "%-11s %7s %9s %8s %10s %9s %12s %14s %8s\n", "phase", "secs", "redis cpu", "cp cpu", "redis op/s", "stream ev", "stream B/s", "out B/s/node", "clients")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-11s %7.1f %9.2f %8.2f %10.0f %9d %12.0f %14.0f %8d\n", p.Name, p.Seconds, p.RedisCPU, p.ControlPlaneCPU, p.RedisOpsPerSec, p.StreamEntries, p.StreamBytesPerS, p.NetOutPerNodePerS, p.Clients)
	}
	fmt.Fprintf(w, "placement (PUT answered → node sees assignment), s: n=%d p50 %.3f p90 %.3f p99 %.3f max %.3f\n", r.Placement.N, r.Placement.P50, r.Placement.P90, r.Placement.P99, r.Placement.Max)
	fmt.Fprintf(w, "ready (PUT answered → node published endpoint), s: n=%d p50 %.3f p90 %.3f p99 %.3f max %.3f\n", r.Ready.N, r.Ready.P50, r.Ready.P90, r.Ready.P99, r.Ready.Max)
	fmt.Fprintf(w, "sim: %+v\n", r.Sim)
}
