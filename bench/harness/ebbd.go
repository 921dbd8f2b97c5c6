package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// Ebbd is one ebbd (role all) the harness started, with a fresh data dir
// and its own private containerd under it.
type Ebbd struct {
	Dir      string
	APIAddr  string
	HTTPAddr string
	Client   *api.Client
	// Isolation is the --isolation it runs with: "on" or "off".
	Isolation string

	slot netSlot // its replica ports, bridge and replica range

	token    string // the admin token, which /metrics on the API port needs
	h        *Harness
	proc     *Proc
	ctrd     *containerdproc.Supervisor
	ctrdAddr string
	once     sync.Once
}

// EbbdOptions are the per-run settings of an ebbd.
type EbbdOptions struct {
	// Name labels the data dir and the log.
	Name string
	// EBPF is the --ebpf flag: "auto", "on" or "off". Default "off", so that
	// figures other than the eBPF section's measure the userspace path.
	EBPF string
	// Isolation is the --isolation flag: "on" (what users get: each
	// replica in its own network and user namespace on the ebbd's own
	// bridge) or "off" (replicas on the host's network). Default
	// Config.Isolation, itself "on" by default.
	Isolation string
	// Store is the --store flag: "embedded" (default) or a redis:// URL.
	Store string
	// Args are more flags, after the harness's own.
	Args []string
}

// Values of EbbdOptions.Isolation, as ebbd's --isolation takes them.
const (
	IsolationOn  = "on"
	IsolationOff = "off"
)

// harnessVIPPrefix keeps the VIPs of the harness's ebbds apart from the
// default range another ebbd on the machine may be using.
const harnessVIPPrefix = "127.79.0.0/16"

// StartEbbd starts bin/ebbd and waits until its API is ready and its node
// agent has reported the node.
func (h *Harness) StartEbbd(ctx context.Context, o EbbdOptions) (*Ebbd, error) {
	if o.EBPF == "" {
		o.EBPF = "off"
	}
	if o.Isolation == "" {
		o.Isolation = h.cfg.Isolation
	}
	if o.Store == "" {
		o.Store = "embedded"
	}
	if o.Isolation != IsolationOn && o.Isolation != IsolationOff {
		return nil, fmt.Errorf("ebbd %s: isolation %q: want on or off", o.Name, o.Isolation)
	}
	slot, err := lockNetSlot(ctx, filepath.Join(h.cfg.BinDir, "ebbd"), h.log)
	if err != nil {
		return nil, fmt.Errorf("ebbd %s: %w", o.Name, err)
	}
	dir, err := os.MkdirTemp(h.work, "ebbd-"+o.Name+"-")
	if err != nil {
		slot.unlock()
		return nil, err
	}
	e := &Ebbd{Dir: dir, Isolation: o.Isolation, slot: slot, h: h}
	apiPort, err := freePort()
	if err != nil {
		e.Stop()
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		e.Stop()
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		e.Stop()
		return nil, err
	}
	e.APIAddr, e.HTTPAddr = loopback(apiPort), loopback(httpPort)
	// ebbd gets a containerd of its own that the harness runs, so that once
	// ebbd has stopped the harness can delete every container it left (the
	// node agent leaves replicas running on purpose, to adopt them after a
	// restart) before stopping containerd.
	e.ctrd, err = containerdproc.New(containerdproc.Config{
		Address: filepath.Join(dir, "unused.sock"),
		DataDir: filepath.Join(dir, "containerd"),
	}, h.log.With("component", "containerd-"+o.Name))
	if err != nil {
		e.Stop()
		return nil, err
	}
	// Start ties the daemon's life to its context; this one must outlive a
	// cancelled run so that Stop can still delete the containers.
	if e.ctrdAddr, err = e.ctrd.Start(context.WithoutCancel(ctx)); err != nil {
		e.Stop()
		return nil, fmt.Errorf("containerd for ebbd %s: %w", o.Name, err)
	}
	logf, err := os.Create(filepath.Join(dir, "ebbd.log"))
	if err != nil {
		e.Stop()
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	args := append([]string{
		"--data-dir", dir,
		"--api-addr", e.APIAddr,
		"--http-addr", e.HTTPAddr,
		"--metrics-addr", loopback(metricsPort),
		"--containerd-address", e.ctrdAddr,
		"--ebpf", o.EBPF,
		"--vip-prefix", harnessVIPPrefix,
		"--isolation", o.Isolation,
		"--store", o.Store,
		"--log-level", "warn",
	}, slot.flags()...)
	args = append(args, o.Args...)
	cmd := exec.Command(filepath.Join(h.cfg.BinDir, "ebbd"), args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(h.cfg.EbbdGOMAXPROCS))
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := h.procs.Start("ebbd-"+o.Name, cmd)
	if err != nil {
		e.Stop()
		return nil, err
	}
	e.proc = p
	token, err := e.waitReady(ctx, 60*time.Second)
	if err != nil {
		e.Stop()
		return nil, err
	}
	e.token = token
	e.Client, err = api.NewClient("http://"+e.APIAddr, token, api.WithHTTPClient(h.hc), api.WithTimeout(60*time.Second))
	if err != nil {
		e.Stop()
		return nil, err
	}
	if err := poll(ctx, 60*time.Second, 50*time.Millisecond, func() (bool, error) {
		nodes, err := e.Client.ListNodes(ctx)
		return err == nil && len(nodes) > 0, nil
	}); err != nil {
		e.Stop()
		return nil, fmt.Errorf("ebbd %s: node agent never reported its node: %w; log tail:\n%s", o.Name, err, e.LogTail())
	}
	h.log.Info("ebbd ready", "name", o.Name, "pid", p.PID(), "api", e.APIAddr, "http", e.HTTPAddr, "ebpf", o.EBPF,
		"isolation", o.Isolation, "bridge", slot.bridge(), "replicaCIDR", slot.cidr(), "replicaPorts", slot.ports())
	return e, nil
}

func (e *Ebbd) waitReady(ctx context.Context, timeout time.Duration) (string, error) {
	var token string
	err := poll(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		if ok, werr := e.proc.Exited(); ok {
			return false, fmt.Errorf("ebbd exited during start (%v); log tail:\n%s", werr, e.LogTail())
		}
		resp, err := e.h.hc.Get("http://" + e.APIAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		b, err := os.ReadFile(filepath.Join(e.Dir, "token"))
		if err != nil {
			return false, nil
		}
		token = strings.TrimSpace(string(b))
		return token != "", nil
	})
	return token, err
}

// isolationNote says where the ebbd's replicas run, for method texts.
func (e *Ebbd) isolationNote() string {
	if e.Isolation == IsolationOff {
		return "isolation off: on the host's network"
	}
	return fmt.Sprintf("isolation on: in its own network namespace on bridge %s, %s", e.slot.bridge(), e.slot.cidr())
}

// PID is ebbd's process id.
func (e *Ebbd) PID() int { return e.proc.PID() }

// Stop stops ebbd with SIGTERM, deletes the containers it leaves in its
// containerd, stops that containerd, kills whatever of the run is left,
// tears down its replica network (a failure fails the section and the run:
// see Harness.networkLeft), and removes the data dir unless the harness
// keeps its work dir.
func (e *Ebbd) Stop() {
	e.once.Do(func() {
		if e.proc != nil {
			e.proc.Stop(syscall.SIGTERM, 45*time.Second)
			e.h.procs.Forget(e.proc)
		}
		if e.ctrd != nil {
			if e.ctrdAddr != "" {
				if err := deleteAllContainers(e.ctrdAddr); err != nil {
					e.h.log.Warn("delete ebbd's containers", "err", err)
				}
			}
			e.ctrd.Stop()
		}
		if pids := KillUnder(e.Dir); len(pids) > 0 {
			e.h.log.Warn("killed processes ebbd left behind", "dir", e.Dir, "pids", pids)
		}
		// The replicas are gone now, so their namespaces and links can go.
		if err := e.slot.teardown(context.Background(), filepath.Join(e.h.cfg.BinDir, "ebbd")); err != nil {
			e.h.log.Error("replica network left behind", "bridge", e.slot.bridge(), "err", err)
			e.h.noteNetworkLeft(err)
		}
		e.slot.unlock()
		if !e.h.cfg.KeepWork {
			// Keep the log: it is small and is the first thing to read.
			if b, err := os.ReadFile(filepath.Join(e.Dir, "ebbd.log")); err == nil {
				_ = os.WriteFile(e.Dir+".log", b, 0o644)
			}
			if err := RemoveTree(e.Dir); err != nil {
				e.h.log.Warn("remove ebbd data dir", "dir", e.Dir, "err", err)
			}
		}
	})
}

// deleteAllContainers kills and deletes every task and container in every
// namespace of the containerd at addr.
func deleteAllContainers(addr string) error {
	client, err := containerd.New(addr, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := client.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := client.Containers(nctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			deleteContainer(nctx, c)
		}
	}
	return nil
}

// LogTail returns the last lines of ebbd's log.
func (e *Ebbd) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "ebbd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Metrics scrapes ebbd's /metrics (on the API address in the all role).
func (e *Ebbd) Metrics(ctx context.Context) (Metrics, error) {
	return Scrape(ctx, e.h.hc, "http://"+e.APIAddr+"/metrics", e.token)
}

// RSS returns ebbd's VmRSS and VmHWM.
func (e *Ebbd) RSS() (rss, hwm int64, err error) { return procStatus(e.PID()) }

// PushHello packages bin/hello as an image and pushes it.
func (e *Ebbd) PushHello(ctx context.Context) (string, error) {
	archive := filepath.Join(e.h.work, "hello.tar")
	if _, err := os.Stat(archive); err != nil {
		f, err := os.Create(archive)
		if err != nil {
			return "", err
		}
		_, err = ociimage.BuildFromBinary(f, filepath.Join(e.h.cfg.BinDir, "hello"), ociimage.BuildOptions{Name: "ebbbench/hello:latest"})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("build hello image: %w", err)
		}
	}
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	img, err := e.Client.PushImage(ctx, f)
	if err != nil {
		return "", fmt.Errorf("push hello image: %w", err)
	}
	return img.Name, nil
}

// Deploy puts a function and, unless spec's initial scale is 0, waits until
// its latest revision has that many ready replicas.
func (e *Ebbd) Deploy(ctx context.Context, name string, spec api.FunctionSpec, timeout time.Duration) (api.Function, error) {
	if _, _, err := e.Client.PutFunction(ctx, name, spec); err != nil {
		return api.Function{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	want := api.DefaultInitialScale
	if spec.Scale.Initial != nil {
		want = *spec.Scale.Initial
	}
	want = max(want, spec.Scale.Min)
	return e.WaitRevision(ctx, name, timeout, func(r api.RevisionStatus) bool { return r.Ready >= want })
}

// WaitRevision polls the function until cond holds for its latest
// revision, and fails early when the revision cannot start.
func (e *Ebbd) WaitRevision(ctx context.Context, name string, timeout time.Duration, cond func(api.RevisionStatus) bool) (api.Function, error) {
	var fn api.Function
	err := poll(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		var err error
		fn, err = e.Client.GetFunction(ctx, name)
		if err != nil {
			return false, nil
		}
		r, ok := latest(fn)
		if !ok {
			return false, nil
		}
		if r.State == api.RevisionFailed {
			return false, fmt.Errorf("function %s: revision %s failed: %s", name, r.Name, r.Message)
		}
		return cond(r), nil
	})
	if err != nil {
		return fn, fmt.Errorf("wait for %s: %w", name, err)
	}
	return fn, nil
}

// latest returns the status of the function's latest revision.
func latest(fn api.Function) (api.RevisionStatus, bool) {
	for _, r := range fn.Revisions {
		if r.Name == fn.LatestRevision {
			return r, true
		}
	}
	return api.RevisionStatus{}, false
}

// atZero is the condition "scaled to zero, endpoints gone, with a
// pre-created task waiting" that each cold start begins from.
func atZero(withPool bool) func(api.RevisionStatus) bool {
	return func(r api.RevisionStatus) bool {
		return r.Desired == 0 && r.Ready == 0 && (!withPool || r.PreCreated > 0)
	}
}

// poll calls cond every interval until it returns true or an error, ctx
// ends, or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
