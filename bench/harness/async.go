package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
)

// The async section: asynchronous invocations end to end. A warm function
// (one replica, min = max = 1, so no cold start is in the figure) gets
// asyncN requests with Ebb-Invoke: async through the router, from
// asyncSubmitters clients at once; the router stores each in the queue
// and answers 202, and ebbd's invoker delivers them back through the
// router. Throughput is asyncN over the time from the first submission to
// the last invocation's completion (its CompletedAt); the enqueue latency
// is each 202's round trip. Two ebbds run side by side, one on the
// embedded store (the queue in <data-dir>/queue.db, bbolt) and one on a
// redis-server the section starts (AOF, appendfsync always, as
// deploy/multinode/redis.conf), and the rounds alternate between them.

const (
	asyncFunction = "asy"
	// asyncSubmitters bounds the submissions in flight at once.
	asyncSubmitters = 16
	asyncStoreBbolt = "bbolt"
	asyncStoreRedis = "redis"
)

func asyncN(quick bool) int {
	if quick {
		return 500
	}
	return 2000
}

func asyncRounds(quick bool) int {
	if quick {
		return 1
	}
	return 3
}

// AsyncRound is one batch of asyncN invocations to one ebbd.
type AsyncRound struct {
	Store string `json:"store"`
	N     int    `json:"n"`
	// SubmitMs is the first submission's start to the last 202;
	// CompleteMs the first submission's start to the last CompletedAt.
	SubmitMs   float64 `json:"submitMs"`
	CompleteMs float64 `json:"completeMs"`
	// PerSec is N / CompleteMs: invocations per second end to end.
	PerSec float64 `json:"perSec"`
	// SubmitPerSec is N / SubmitMs: how fast the router queued them.
	SubmitPerSec float64 `json:"submitPerSec"`
	// Enqueue is the distribution of the 202s' round trips.
	Enqueue Dist `json:"enqueue"`
	// Succeeded counts the invocations read back Succeeded; Retried those
	// that took more than one attempt.
	Succeeded int `json:"succeeded"`
	Retried   int `json:"retried"`
}

// AsyncStore is every round on one store.
type AsyncStore struct {
	Store      string       `json:"store"`
	Rounds     []AsyncRound `json:"rounds"`
	PerSec     Spread       `json:"perSec"`
	EnqueueP50 Spread       `json:"enqueueP50Ms"`
	EnqueueP99 Spread       `json:"enqueueP99Ms"`
}

func (s *AsyncStore) summarize() {
	var per, p50, p99 []float64
	for _, r := range s.Rounds {
		per = append(per, r.PerSec)
		p50 = append(p50, r.Enqueue.P50)
		p99 = append(p99, r.Enqueue.P99)
	}
	s.PerSec, s.EnqueueP50, s.EnqueueP99 = SpreadOf(per), SpreadOf(p50), SpreadOf(p99)
}

// AsyncResult is the async section.
type AsyncResult struct {
	N          int         `json:"n"`
	Submitters int         `json:"submitters"`
	Function   string      `json:"function"`
	Invoker    string      `json:"invoker"`
	Bbolt      *AsyncStore `json:"bbolt"`
	Redis      *AsyncStore `json:"redis"`
	// RedisRatio is Redis's throughput over bbolt's, round by round.
	RedisRatio Spread `json:"redisToBboltThroughput"`
}

// submission is one 202 as the submitter saw it.
type submission struct {
	id      string
	started time.Time
	took    time.Duration
}

func (h *Harness) async(ctx context.Context) (Result, error) {
	redisURL, err := h.startRedis(ctx)
	if err != nil {
		return nil, err
	}
	stores := []struct {
		name, flag string
	}{{asyncStoreBbolt, "embedded"}, {asyncStoreRedis, redisURL}}
	ebbds := make([]*Ebbd, len(stores))
	for i, s := range stores {
		e, err := h.StartEbbd(ctx, EbbdOptions{Name: "async-" + s.name, Store: s.flag})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		defer e.Stop()
		if _, err := h.warmFunction(ctx, e, asyncFunction); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		ebbds[i] = e
	}
	n := asyncN(h.cfg.Quick)
	res := &AsyncResult{
		N: n, Submitters: asyncSubmitters,
		Function: "examples/hello, one warm replica (scale min = max = 1), default async policy (maxConcurrency " +
			strconv.Itoa(api.DefaultAsyncMaxConcurrency) + ")",
		Invoker: "its default config: 16 deliveries in flight, a 200 ms poll when idle",
		Bbolt:   &AsyncStore{Store: asyncStoreBbolt},
		Redis:   &AsyncStore{Store: asyncStoreRedis},
	}
	for round := 1; round <= asyncRounds(h.cfg.Quick); round++ {
		for i, s := range stores {
			r, err := h.asyncRound(ctx, ebbds[i], s.name, n)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", s.name, round, err)
			}
			h.log.Info("async", "store", s.name, "round", round, "per_sec", int(r.PerSec),
				"enqueue_p50_ms", fmt.Sprintf("%.2f", r.Enqueue.P50), "enqueue_p99_ms", fmt.Sprintf("%.2f", r.Enqueue.P99))
			st := res.Bbolt
			if s.name == asyncStoreRedis {
				st = res.Redis
			}
			st.Rounds = append(st.Rounds, r)
		}
	}
	res.Bbolt.summarize()
	res.Redis.summarize()
	var b, r []float64
	for i := range res.Bbolt.Rounds {
		b = append(b, res.Bbolt.Rounds[i].PerSec)
		r = append(r, res.Redis.Rounds[i].PerSec)
	}
	res.RedisRatio = SpreadOf(Ratios(r, b))
	return res, nil
}

// asyncRound submits n invocations to e's router, waits until its invoker
// has delivered them all, and reads each back for its completion time.
func (h *Harness) asyncRound(ctx context.Context, e *Ebbd, store string, n int) (AsyncRound, error) {
	before, err := e.Metrics(ctx)
	if err != nil {
		return AsyncRound{}, err
	}
	done0 := asyncDelivered(before)
	subs, err := h.submitAsync(ctx, e.HTTPAddr, asyncFunction+".localhost", n)
	if err != nil {
		return AsyncRound{}, err
	}
	// The invoker's own count says when all are through; the figure
	// itself comes from each invocation's CompletedAt below.
	var last Metrics
	err = poll(ctx, 5*time.Minute, 200*time.Millisecond, func() (bool, error) {
		m, err := e.Metrics(ctx)
		if err != nil {
			return false, nil
		}
		last = m
		if bad := m.Get("ebb_invoker_deliveries_total", "outcome", string(api.InvocationDeadLetter)) +
			m.Get("ebb_invoker_deliveries_total", "outcome", string(api.InvocationFailed)); bad > 0 {
			return false, fmt.Errorf("%.0f invocations failed or went to the dead letter state", bad)
		}
		return asyncDelivered(m)-done0 >= float64(n), nil
	})
	if err != nil {
		return AsyncRound{}, fmt.Errorf("%.0f of %d delivered: %w; ebbd log tail:\n%s", asyncDelivered(last)-done0, n, err, e.LogTail())
	}
	invs, err := h.readInvocations(ctx, e, subs)
	if err != nil {
		return AsyncRound{}, err
	}
	return asyncRoundOf(store, subs, invs)
}

// asyncDelivered is the invoker's count of invocations delivered and
// Succeeded.
func asyncDelivered(m Metrics) float64 {
	return m.Get("ebb_invoker_deliveries_total", "outcome", string(api.InvocationSucceeded))
}

// asyncRoundOf works out a round's figures from the submissions and the
// invocations read back, in the same order.
func asyncRoundOf(store string, subs []submission, invs []api.Invocation) (AsyncRound, error) {
	if len(subs) == 0 || len(subs) != len(invs) {
		return AsyncRound{}, fmt.Errorf("%d submissions, %d invocations read back", len(subs), len(invs))
	}
	r := AsyncRound{Store: store, N: len(subs)}
	first := subs[0].started
	var lastAnswer, lastDone time.Time
	took := make([]time.Duration, len(subs))
	for i, s := range subs {
		if s.started.Before(first) {
			first = s.started
		}
		if end := s.started.Add(s.took); end.After(lastAnswer) {
			lastAnswer = end
		}
		took[i] = s.took
		inv := invs[i]
		if inv.ID != s.id {
			return AsyncRound{}, fmt.Errorf("submission %d is %s, read back %s", i, s.id, inv.ID)
		}
		if inv.Status != api.InvocationSucceeded {
			return AsyncRound{}, fmt.Errorf("invocation %s is %s after %d attempts: %s", inv.ID, inv.Status, inv.Attempts, inv.LastError)
		}
		r.Succeeded++
		if inv.Attempts > 1 {
			r.Retried++
		}
		if inv.CompletedAt.After(lastDone) {
			lastDone = inv.CompletedAt
		}
	}
	r.SubmitMs = ms(lastAnswer.Sub(first))
	r.CompleteMs = ms(lastDone.Sub(first))
	if r.SubmitMs <= 0 || r.CompleteMs <= 0 {
		return AsyncRound{}, fmt.Errorf("the last completion (%s) is not after the first submission (%s)", lastDone.Format(time.RFC3339Nano), first.Format(time.RFC3339Nano))
	}
	r.PerSec = float64(r.N) / (r.CompleteMs / 1000)
	r.SubmitPerSec = float64(r.N) / (r.SubmitMs / 1000)
	r.Enqueue = Summarize(took)
	return r, nil
}

// submitAsync sends n POSTs with Ebb-Invoke: async to host through the
// router at addr, asyncSubmitters at a time over kept-alive connections,
// and returns each one's id and timing, in submission order.
func (h *Harness) submitAsync(ctx context.Context, addr, host string, n int) ([]submission, error) {
	hc := newHTTPClient(asyncSubmitters)
	defer hc.CloseIdleConnections()
	subs := make([]submission, n)
	next := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range asyncSubmitters {
		g.Go(func() error {
			for i := range next {
				s, err := submitOne(gctx, hc, addr, host, i)
				if err != nil {
					return fmt.Errorf("submission %d: %w", i, err)
				}
				subs[i] = s
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return subs, nil
}

func submitOne(ctx context.Context, hc *http.Client, addr, host string, i int) (submission, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body := []byte(`{"n":` + strconv.Itoa(i) + `}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
	if err != nil {
		return submission{}, err
	}
	req.Host = host
	req.Header.Set(api.HeaderInvoke, "async")
	req.Header.Set("Content-Type", "application/json")
	started := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return submission{}, err
	}
	took := time.Since(started)
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return submission{}, fmt.Errorf("status %d, not 202: %s", resp.StatusCode, oneLine(string(b), 200))
	}
	id := resp.Header.Get(api.HeaderInvocationID)
	if !api.ValidInvocationID(id) {
		return submission{}, fmt.Errorf("202 without a valid %s: %q", api.HeaderInvocationID, id)
	}
	return submission{id: id, started: started, took: took}, nil
}

// readInvocations reads every submitted invocation back through the API,
// after the round: its status, attempts and completion time.
func (h *Harness) readInvocations(ctx context.Context, e *Ebbd, subs []submission) ([]api.Invocation, error) {
	invs := make([]api.Invocation, len(subs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(asyncSubmitters)
	for i, s := range subs {
		g.Go(func() error {
			inv, err := e.Client.GetInvocation(gctx, asyncFunction, s.id)
			if err != nil {
				return err
			}
			invs[i] = inv
			return nil
		})
	}
	return invs, g.Wait()
}

// startRedis runs a redis-server for the section on a free loopback port,
// with its data in the work dir, configured as deploy/multinode/redis.conf
// is (AOF, appendfsync always, no eviction), and returns its URL. The
// harness stops it with the section's other processes.
func (h *Harness) startRedis(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", errors.New("redis-server missing: apt-get install redis-server (the harness's preflight does, as root)")
	}
	dir, err := os.MkdirTemp(h.work, "redis-")
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := loopback(port)
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
		"--save", "", "--protected-mode", "yes", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"))
	p, err := h.procs.Start("redis-server", cmd)
	if err != nil {
		return "", err
	}
	err = poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if ok, werr := p.Exited(); ok {
			return false, fmt.Errorf("redis-server exited (%v)", werr)
		}
		return pingRedis(addr), nil
	})
	if err != nil {
		p.Stop(syscall.SIGTERM, 5*time.Second)
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return "", fmt.Errorf("redis-server on %s: %w: %s", addr, err, oneLine(string(log), 400))
	}
	h.log.Info("redis-server ready", "addr", addr, "pid", p.PID())
	return "redis://" + addr + "/0", nil
}

// pingRedis says whether a Redis answers PING at addr.
func pingRedis(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "+PONG\r\n"
}

// Rows implements Result.
func (r *AsyncResult) Rows() []Row {
	var rows []Row
	for _, s := range []*AsyncStore{r.Bbolt, r.Redis} {
		if s == nil || len(s.Rounds) == 0 {
			continue
		}
		rows = append(rows,
			Row{
				Figure: "async throughput, " + s.Store,
				Value:  s.PerSec.Format("%.0f") + " invocations/s",
				Method: fmt.Sprintf("%d async POSTs through the router (%d at once) to a warm function, first submit to last CompletedAt; %d rounds alternating bbolt/redis",
					r.N, r.Submitters, len(s.Rounds)),
			},
			Row{
				Figure: "async enqueue (202), " + s.Store,
				Value:  fmt.Sprintf("p50 %s ms, p99 %s ms", s.EnqueueP50.Format("%.2f"), s.EnqueueP99.Format("%.2f")),
				Method: "each 202's round trip at the submitting client, queue write included",
			})
	}
	if len(r.RedisRatio.Runs) > 0 {
		rows = append(rows, Row{
			Figure: "async throughput, redis / bbolt",
			Value:  r.RedisRatio.Format("%.2f") + "×",
			Method: "round by round",
		})
	}
	return rows
}

// Goals implements Result.
func (r *AsyncResult) Goals() []Goal {
	lost, total := 0, 0
	for _, s := range []*AsyncStore{r.Bbolt, r.Redis} {
		if s == nil {
			continue
		}
		for _, round := range s.Rounds {
			total += round.N
			lost += round.N - round.Succeeded
		}
	}
	return []Goal{{
		Source: "issue 20", Goal: "async throughput and enqueue p99 on bbolt and Redis recorded; every invocation Succeeded",
		Value:  fmt.Sprintf("%d of %d Succeeded", total-lost, total),
		Status: goalIf(total > 0 && lost == 0 && r.Bbolt != nil && r.Redis != nil && len(r.Bbolt.Rounds) > 0 && len(r.Redis.Rounds) > 0),
	}}
}

// Markdown implements Result.
func (r *AsyncResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: two ebbds side by side, one on the embedded store (its queue in `queue.db`, bbolt) and one on a redis-server "+
		"the harness starts (AOF, appendfsync always, noeviction, as deploy/multinode/redis.conf); the other idles while one runs. "+
		"Function: %s. Each round sends %d POSTs with `Ebb-Invoke: async` through the router, %d at once over kept-alive connections; "+
		"ebbd's invoker delivers them back through the router (%s). *Throughput* is %d over the time from the first submission to the last "+
		"invocation's CompletedAt, read back through the API once the invoker's Succeeded count says all are through. "+
		"*Enqueue* is each 202's round trip at the client. Rounds alternate bbolt, redis.\n\n",
		r.Function, r.N, r.Submitters, r.Invoker, r.N)
	for _, s := range []*AsyncStore{r.Bbolt, r.Redis} {
		if s == nil || len(s.Rounds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s: %s invocations/s; enqueue p50 %s ms, p99 %s ms.\n\n", s.Store, s.PerSec.Format("%.0f"),
			s.EnqueueP50.Format("%.2f"), s.EnqueueP99.Format("%.2f"))
	}
	if len(r.RedisRatio.Runs) > 0 {
		fmt.Fprintf(&b, "Redis / bbolt throughput: %s×.\n\n", r.RedisRatio.Format("%.2f"))
	}
	b.WriteString("| store | round | invocations/s | submit ms | submitted/s | complete ms | enqueue p50 ms | p90 ms | p99 ms | max ms | retried |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range []*AsyncStore{r.Bbolt, r.Redis} {
		if s == nil {
			continue
		}
		for i, round := range s.Rounds {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %d |\n", s.Store, i+1, round.PerSec,
				round.SubmitMs, round.SubmitPerSec, round.CompleteMs, round.Enqueue.P50, round.Enqueue.P90, round.Enqueue.P99, round.Enqueue.Max, round.Retried)
		}
	}
	return b.String()
}
