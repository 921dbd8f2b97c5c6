package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/examples/grpcecho/echopb"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// GRPCResult is the grpc section: unary gRPC through ebb, through nginx
// (grpc_pass, one worker) and to the replica directly, alternating in one
// run, and plain h2c (h2load) through ebb and nginx.
type GRPCResult struct {
	Backend        string          `json:"backend"`
	Load           string          `json:"load"`
	H2Load         string          `json:"h2load"`
	Rounds         int             `json:"rounds"`
	EbbdGOMAXPROCS int             `json:"ebbdGOMAXPROCS"`
	Targets        []*GRPCTarget   `json:"targets"`
	H2C            []*H2LoadTarget `json:"h2c"`
	EbbVsNginx     Spread          `json:"ebbRPSOverNginx"`
	EbbP99VsNginx  Spread          `json:"ebbP99OverNginxP99"`
	EbbVsDirect    Spread          `json:"ebbRPSOverDirect"`
	H2CEbbVsNginx  Spread          `json:"h2cEbbRPSOverNginx"`
}

// GRPCTarget is one path's unary runs.
type GRPCTarget struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`
	RPS   Spread    `json:"rps"`
	P50   Spread    `json:"p50Ms"`
	P99   Spread    `json:"p99Ms"`
	Errs  int64     `json:"errors"`
	runs  []grpcRun // in round order
	Calls int64     `json:"calls"`
}

type grpcRun struct {
	rps, p50, p99 float64
	calls, errs   int64
}

// H2LoadTarget is one path's h2load runs.
type H2LoadTarget struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	RPS    Spread `json:"rps"`
	Failed int64  `json:"failed"`
}

// grpcShape is the unary load: conns gRPC connections, each with streams
// calls in flight, for a duration.
const (
	grpcConns   = 4
	grpcStreams = 8
	h2Conns     = 4
	h2Streams   = 8
)

func (h *Harness) grpcSection(ctx context.Context) (Result, error) {
	res := &GRPCResult{Rounds: 3, EbbdGOMAXPROCS: h.cfg.EbbdGOMAXPROCS}
	h2load, err := exec.LookPath("h2load")
	if err != nil {
		return nil, fmt.Errorf("h2load (Debian nghttp2-client) is needed: %w", err)
	}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "grpc"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()

	ref, err := h.pushGRPCEcho(ctx, e)
	if err != nil {
		return nil, err
	}
	one := 1
	spec := api.FunctionSpec{Image: ref, Protocol: api.ProtocolH2C, Scale: api.Scale{Min: 1, Max: 1, Initial: &one}}
	if _, err := e.Deploy(ctx, "grpcbench", spec, 2*time.Minute); err != nil {
		return nil, err
	}
	f, err := e.WaitRevision(ctx, "grpcbench", 30*time.Second, func(r api.RevisionStatus) bool { return len(r.Replicas) == 1 })
	if err != nil {
		return nil, err
	}
	r, _ := latest(f)
	backend := r.Replicas[0].Addr
	res.Backend = "one warm replica of examples/grpcecho (grpc-go, h2c, in containerd, CPU limit 1, " + e.isolationNote() + ") at " + backend

	// Plain h2c goes to examples/hello, an HTTP/1.1 replica, as a browser's
	// HTTP/2 request would.
	web, err := h.warmFunction(ctx, e, "h2web")
	if err != nil {
		return nil, err
	}

	ngx, err := h.startNginxH2(ctx, backend, web)
	if err != nil {
		return nil, err
	}
	defer ngx.Stop()

	d := h.wrkDuration()
	res.Load = fmt.Sprintf("own Go client (google.golang.org/grpc): %d connections × %d calls in flight, unary Echo.Unary with a 5-byte message, %s per run", grpcConns, grpcStreams, d)
	res.H2Load = fmt.Sprintf("h2load -c %d -m %d -D %d GET / (plain h2c, prior knowledge) to examples/hello", h2Conns, h2Streams, int(d.Seconds()))
	targets := []*GRPCTarget{
		{Name: "ebb", Addr: e.HTTPAddr},
		{Name: "nginx (grpc_pass, 1 worker)", Addr: ngx.grpcAddr},
		{Name: "direct", Addr: backend},
	}
	authority := "grpcbench.localhost"
	h2t := []*H2LoadTarget{
		{Name: "ebb", Addr: e.HTTPAddr},
		{Name: "nginx (http2, proxy_pass, 1 worker)", Addr: ngx.h2Addr},
	}
	var h2runs [2][]float64
	// Warm every path once: connections, the replica's first calls.
	for _, t := range targets {
		if _, err := grpcLoad(ctx, t.Addr, authority, time.Second); err != nil {
			return nil, fmt.Errorf("warm %s: %w", t.Name, err)
		}
	}
	for round := 0; round < res.Rounds; round++ {
		for _, t := range targets {
			run, err := grpcLoad(ctx, t.Addr, authority, d)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", t.Name, round+1, err)
			}
			h.log.Info("grpc run", "target", t.Name, "round", round+1, "rps", int(run.rps), "p99_ms", run.p99)
			t.runs = append(t.runs, run)
		}
		for i, t := range h2t {
			rps, failed, err := runH2Load(ctx, h2load, t.Addr, "h2web.localhost", d)
			if err != nil {
				return nil, fmt.Errorf("h2load %s round %d: %w", t.Name, round+1, err)
			}
			h.log.Info("h2load run", "target", t.Name, "round", round+1, "rps", int(rps))
			h2runs[i] = append(h2runs[i], rps)
			t.Failed += failed
		}
	}
	for _, t := range targets {
		var rps, p50, p99 []float64
		for _, r := range t.runs {
			rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
			t.Errs += r.errs
			t.Calls += r.calls
		}
		t.RPS, t.P50, t.P99 = SpreadOf(rps), SpreadOf(p50), SpreadOf(p99)
	}
	for i, t := range h2t {
		t.RPS = SpreadOf(h2runs[i])
	}
	res.Targets, res.H2C = targets, h2t
	res.EbbVsNginx = SpreadOf(Ratios(targets[0].RPS.Runs, targets[1].RPS.Runs))
	res.EbbP99VsNginx = SpreadOf(Ratios(targets[0].P99.Runs, targets[1].P99.Runs))
	res.EbbVsDirect = SpreadOf(Ratios(targets[0].RPS.Runs, targets[2].RPS.Runs))
	res.H2CEbbVsNginx = SpreadOf(Ratios(h2runs[0], h2runs[1]))
	return res, nil
}

// pushGRPCEcho builds examples/grpcecho (static) into an image and pushes it.
func (h *Harness) pushGRPCEcho(ctx context.Context, e *Ebbd) (string, error) {
	bin := filepath.Join(h.work, "grpcecho")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/grpcecho")
	build.Dir = h.cfg.RepoDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build examples/grpcecho: %v: %s", err, out)
	}
	archive := filepath.Join(h.work, "grpcecho.tar")
	f, err := os.Create(archive)
	if err != nil {
		return "", err
	}
	_, err = ociimage.BuildFromBinary(f, bin, ociimage.BuildOptions{Name: "ebbbench/grpcecho:latest"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("build grpcecho image: %w", err)
	}
	rf, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer rf.Close()
	img, err := e.Client.PushImage(ctx, rf)
	if err != nil {
		return "", fmt.Errorf("push grpcecho image: %w", err)
	}
	return img.Name, nil
}

// grpcLoad runs unary calls against addr for d and measures them.
func grpcLoad(ctx context.Context, addr, authority string, d time.Duration) (grpcRun, error) {
	clients := make([]echopb.EchoClient, grpcConns)
	for i := range clients {
		cc, err := grpc.Dial(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
		if err != nil {
			return grpcRun{}, err
		}
		defer cc.Close()
		clients[i] = echopb.NewEchoClient(cc)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var errs int64
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range grpcConns * grpcStreams {
		c := clients[i%grpcConns]
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1<<16)
			var myErrs int64
			var myErr error
			req := &echopb.EchoRequest{Message: "hello"}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := c.Unary(cctx, req)
				cancel()
				if err != nil {
					myErrs++
					if myErr == nil {
						myErr = err
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += myErrs
			if firstErr == nil {
				firstErr = myErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	if len(lat) == 0 {
		return grpcRun{}, fmt.Errorf("no call succeeded: %v", firstErr)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p/100*float64(len(lat))))].Microseconds()) / 1000
	}
	return grpcRun{rps: float64(len(lat)) / took.Seconds(), p50: ms(50), p99: ms(99), calls: int64(len(lat)), errs: errs}, nil
}

var (
	h2loadRPS    = regexp.MustCompile(`finished in [0-9.]+s, ([0-9.]+) req/s`)
	h2loadFailed = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed`)
)

// runH2Load runs h2load against addr with host as :authority for d.
func runH2Load(ctx context.Context, bin, addr, host string, d time.Duration) (rps float64, failed int64, err error) {
	cmd := exec.CommandContext(ctx, bin, "-c", strconv.Itoa(h2Conns), "-m", strconv.Itoa(h2Streams),
		"-D", strconv.Itoa(int(d.Seconds())), "-H", ":authority: "+host, "http://"+addr+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, oneLine(string(out), 500))
	}
	m := h2loadRPS.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no req/s in h2load's output: %s", oneLine(string(out), 500))
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := h2loadFailed.FindSubmatch(out); m != nil {
		failed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	return rps, failed, nil
}

// nginxH2 is nginx with one worker serving gRPC (grpc_pass) and plain
// h2c (proxy_pass to an HTTP/1.1 replica) on two h2c ports.
type nginxH2 struct {
	*Peer
	grpcAddr, h2Addr string
}

func nginxH2Config(dir, grpcListen, h2Listen, grpcBackend, webBackend string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events {
    worker_connections 20000;
}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    upstream grpcreplica {
        server %[4]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    upstream webreplica {
        server %[5]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[2]s http2;
        location / {
            grpc_pass grpc://grpcreplica;
        }
    }
    server {
        listen %[3]s http2;
        location / {
            proxy_pass http://webreplica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, dir, grpcListen, h2Listen, grpcBackend, webBackend)
}

// startNginxH2 starts nginx for the grpc section and waits for its ports.
func (h *Harness) startNginxH2(ctx context.Context, grpcBackend, webBackend string) (*nginxH2, error) {
	dir, err := os.MkdirTemp(h.work, "nginx-h2-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	p1, err := freePort()
	if err != nil {
		return nil, err
	}
	p2, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &nginxH2{grpcAddr: loopback(p1), h2Addr: loopback(p2)}
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(nginxH2Config(dir, n.grpcAddr, n.h2Addr, grpcBackend, webBackend)), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "nginx.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nginx", "-c", cfg, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := h.procs.Start("nginx", cmd)
	if err != nil {
		return nil, err
	}
	n.Peer = &Peer{Name: "nginx", Addr: n.grpcAddr, proc: p, h: h}
	// Its ports speak HTTP/2 only: ready once both accept.
	if err := poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if ok, werr := p.Exited(); ok {
			b, _ := os.ReadFile(filepath.Join(dir, "nginx-error.log"))
			return false, fmt.Errorf("nginx exited (%v): %s", werr, oneLine(string(b), 500))
		}
		for _, a := range []string{n.grpcAddr, n.h2Addr} {
			c, err := net.DialTimeout("tcp", a, 100*time.Millisecond)
			if err != nil {
				return false, nil
			}
			c.Close()
		}
		return true, nil
	}); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// Rows implements Result.
func (r *GRPCResult) Rows() []Row {
	var rows []Row
	for _, t := range r.Targets {
		rows = append(rows, Row{Figure: "unary gRPC req/s, " + t.Name, Value: t.RPS.Format("%.0f"),
			Method: r.Load})
		rows = append(rows, Row{Figure: "unary gRPC p99, " + t.Name, Value: t.P99.Format("%.2f") + " ms"})
	}
	rows = append(rows, Row{Figure: "unary gRPC req/s, ebb ÷ nginx", Value: r.EbbVsNginx.Format("%.2f×")})
	for _, t := range r.H2C {
		rows = append(rows, Row{Figure: "plain h2c req/s (h2load), " + t.Name, Value: t.RPS.Format("%.0f"), Method: r.H2Load})
	}
	rows = append(rows, Row{Figure: "plain h2c req/s, ebb ÷ nginx", Value: r.H2CEbbVsNginx.Format("%.2f×")})
	return rows
}

// Goals implements Result: issue 19's.
func (r *GRPCResult) Goals() []Goal {
	return []Goal{
		{Source: "issue 19", Goal: "unary gRPC req/s through ebb ≥ 1.0× nginx grpc_pass (1 worker)",
			Value: r.EbbVsNginx.Format("%.2f×"), Status: goalIf(r.EbbVsNginx.Median >= 1.0)},
		{Source: "issue 19", Goal: "unary gRPC p99 through ebb no worse than nginx's",
			Value: r.EbbP99VsNginx.Format("%.2f×"), Status: goalIf(r.EbbP99VsNginx.Median <= 1.0)},
	}
}

// Markdown implements Result.
func (r *GRPCResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Backend: %s. Load: %s; %d alternating rounds (ebb, nginx, direct, then h2load ebb, nginx); ebbd GOMAXPROCS %d.\n\n",
		r.Backend, r.Load, r.Rounds, r.EbbdGOMAXPROCS)
	b.WriteString("| path | unary req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", t.Name, t.RPS.Format("%.0f"), t.P50.Format("%.2f"), t.P99.Format("%.2f"), t.Errs)
	}
	fmt.Fprintf(&b, "\nebb ÷ nginx req/s %s, p99 %s; ebb ÷ direct req/s %s.\n\n", r.EbbVsNginx.Format("%.2f"), r.EbbP99VsNginx.Format("%.2f"), r.EbbVsDirect.Format("%.2f"))
	fmt.Fprintf(&b, "Plain h2c, %s:\n\n| path | req/s | failed |\n|---|---|---|\n", r.H2Load)
	for _, t := range r.H2C {
		fmt.Fprintf(&b, "| %s | %s | %d |\n", t.Name, t.RPS.Format("%.0f"), t.Failed)
	}
	fmt.Fprintf(&b, "\nebb ÷ nginx %s.\n", r.H2CEbbVsNginx.Format("%.2f"))
	return b.String()
}
