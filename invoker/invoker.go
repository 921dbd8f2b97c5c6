package invoker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/callbackurl"
	"github.com/ebbrun/ebb/queue"
)

// HeaderDeliveryID names the invocation a delivery is of, so a function
// can recognise a redelivery, and HeaderAttempt says which attempt it is
// (1 for the first). They are X-Ebb-*, not Ebb-*, because the data path
// drops every Ebb-* header on the way to a replica (internal/proxy).
const (
	HeaderDeliveryID = "X-Ebb-Invocation-Id"
	HeaderAttempt    = "X-Ebb-Attempt"
)

// Deps are the Worker's collaborators.
type Deps struct {
	// Queue is the durable queue. Required.
	Queue queue.Queue
	// Functions gives each function's async concurrency limit and
	// timeout. Nil: every function has the defaults, and only
	// Config.Concurrency bounds the deliveries in flight.
	Functions Functions
	// Client sends deliveries, through the router. Nil: a client of the
	// worker's own that follows no redirects and uses no proxy.
	Client *http.Client
	// CallbackClient sends callbacks. Nil: a client of the worker's own
	// that dials only addresses Config.CallbackPolicy allows, follows no
	// redirects and uses no proxy (a proxy would dial for it, unchecked).
	CallbackClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer gets the worker's metrics; optional.
	Registerer prometheus.Registerer
	// Now, Sleep and Jitter are the clock, the wait and the backoff's
	// randomness ([0,1)); tests drive them. Defaults: time.Now, a timer
	// that stops early when ctx ends, rand.Float64.
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func() float64
}

// Worker claims, delivers and finishes asynchronous invocations.
type Worker struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics

	// claimMu makes choosing which functions may be claimed, the claim,
	// and counting it in inflight one step, so two slots cannot both take
	// a function's last free place.
	claimMu  sync.Mutex
	inflight map[string]int

	// wake cuts an idle wait short: Wake, and the end of a delivery (a
	// function held back by its async limit may have room again). One
	// pending wake is enough.
	wake chan struct{}
}

// New returns a Worker; Run starts it.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Queue == nil {
		return nil, errors.New("invoker: Deps.Queue is required")
	}
	cfg = cfg.withDefaults()
	if deps.Client == nil {
		deps.Client = &http.Client{
			Transport: &http.Transport{
				MaxIdleConnsPerHost: cfg.Concurrency,
				IdleConnTimeout:     90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if deps.CallbackClient == nil {
		dialer := &net.Dialer{Timeout: 10 * time.Second, Control: cfg.CallbackPolicy.Control}
		deps.CallbackClient = &http.Client{
			Transport: &http.Transport{
				Proxy:           nil,
				DialContext:     dialer.DialContext,
				IdleConnTimeout: 90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Sleep == nil {
		deps.Sleep = sleep
	}
	if deps.Jitter == nil {
		deps.Jitter = rand.Float64
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, deps: deps, log: deps.Logger.With("component", "invoker"), metrics: m, inflight: map[string]int{}, wake: make(chan struct{}, 1)}, nil
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

// Run delivers until ctx ends: one loop claims, while a slot is free,
// and each claimed invocation is delivered on its own goroutine, at most
// Config.Concurrency at once. One loop, not one per slot, so an idle
// worker asks the queue once per PollInterval. It also expires old
// invocations. A delivery cut short by the end is handed back to the
// queue for another attempt (see process).
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { w.expireLoop(ctx) })
	slots := make(chan struct{}, w.cfg.Concurrency)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		inv, lim, err := w.claim(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, queue.ErrEmpty) {
				w.log.Warn("claim an async invocation", "err", err)
			}
			w.idle(ctx)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer w.release(inv.Function)
			if err := w.process(ctx, inv, lim); err != nil && ctx.Err() == nil {
				w.log.Warn("async delivery", "err", err)
			}
		})
	}
	return nil
}

// Wake tells an idle worker that an invocation may be due, so it claims
// at once instead of at its next poll. ebbd calls it when its own process
// enqueues (an async request to its router, a cron run of its control
// plane), which takes up to PollInterval off their latency; work queued
// by other processes still waits for the poll.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default: // one is pending already
	}
}

// idle waits PollInterval, or less if Wake is called or a delivery ends.
// A claim comes back empty also when every function with work is at its
// async limit; waiting out the whole interval then would cap a function
// at MaxConcurrency deliveries per PollInterval, however fast it answers.
func (w *Worker) idle(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.wake:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = w.deps.Sleep(ctx, w.cfg.PollInterval)
}

func (w *Worker) expireLoop(ctx context.Context) {
	for w.deps.Sleep(ctx, w.cfg.ExpireInterval) == nil {
		if _, err := w.Expire(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("expire invocations", "err", err)
		}
	}
}

// Expire deletes the invocations finished longer than the retention ago.
func (w *Worker) Expire(ctx context.Context) (int, error) {
	n, err := w.deps.Queue.Expire(ctx, w.deps.Now().Add(-w.cfg.Retention))
	if err != nil {
		return 0, fmt.Errorf("expire: %w", err)
	}
	return n, nil
}

// Step claims one due invocation and delivers it to the end: finished,
// and its callback sent when final. It reports false when nothing was due
// (or every function with room is at its limit). An error means the
// outcome could not be recorded; the claim then lapses and the invocation
// is delivered again.
func (w *Worker) Step(ctx context.Context) (bool, error) {
	inv, lim, err := w.claim(ctx)
	if errors.Is(err, queue.ErrEmpty) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer w.release(inv.Function)
	return true, w.process(ctx, inv, lim)
}

// claim takes the next due invocation of a function below its async
// concurrency limit. The claim is taken before the function is known, so
// its visibility is the longest timeout of the functions it may be of plus
// the margin: the known functions' first, then, while none is at its
// limit, any function's (one no record names: deleted, or not yet seen)
// for the default timeout. Claiming the known ones apart keeps a killed
// worker's claims on short functions from waiting out the default.
func (w *Worker) claim(ctx context.Context) (api.Invocation, Limit, error) {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	var limits map[string]Limit
	if w.deps.Functions != nil {
		limits = w.deps.Functions.Limits()
	}
	var longest time.Duration
	var allowed []string
	saturated := false
	for fn, lim := range limits {
		if w.inflight[fn] >= lim.MaxConcurrency {
			saturated = true
			continue
		}
		allowed = append(allowed, fn)
		longest = max(longest, lim.Timeout)
	}
	var (
		inv api.Invocation
		err error = queue.ErrEmpty
	)
	if len(allowed) > 0 {
		inv, err = w.deps.Queue.Claim(ctx, w.cfg.Name, w.deps.Now(), longest+w.cfg.VisibilityMargin, allowed...)
	}
	// A filter must list names, so functions no record names are claimed
	// only while no function is at its limit.
	if errors.Is(err, queue.ErrEmpty) && !saturated {
		inv, err = w.deps.Queue.Claim(ctx, w.cfg.Name, w.deps.Now(), max(longest, defaultLimit.Timeout)+w.cfg.VisibilityMargin)
	}
	if err != nil {
		if errors.Is(err, queue.ErrEmpty) {
			return api.Invocation{}, Limit{}, err
		}
		return api.Invocation{}, Limit{}, fmt.Errorf("claim: %w", err)
	}
	lim, ok := limits[inv.Function]
	if !ok {
		lim = defaultLimit
	}
	w.inflight[inv.Function]++
	w.metrics.inFlight.Inc()
	return inv, lim, nil
}

func (w *Worker) release(fn string) {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	if w.inflight[fn]--; w.inflight[fn] <= 0 {
		delete(w.inflight, fn)
	}
	w.metrics.inFlight.Dec()
	w.Wake()
}

// InFlight is how many deliveries of fn the worker has under way.
func (w *Worker) InFlight(fn string) int {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	return w.inflight[fn]
}

func (w *Worker) process(ctx context.Context, inv api.Invocation, lim Limit) error {
	a := w.deliver(ctx, inv, lim.Timeout+w.cfg.VisibilityMargin)
	if ctx.Err() != nil {
		w.handBack(ctx, inv)
		return ctx.Err()
	}
	out := outcome(inv, a, w.deps.Now(), w.cfg.BackoffBase, w.cfg.BackoffCap, w.deps.Jitter())
	if err := w.deps.Queue.Finish(ctx, out); err != nil {
		if errors.Is(err, queue.ErrClaimLost) {
			// Another worker holds it now (our claim lapsed): its
			// outcome is the one that counts.
			w.metrics.delivered(inv.Function, outcomeClaimLost)
			w.log.Info("async delivery outcome dropped: claim lost", "function", inv.Function, "id", inv.ID, "attempt", inv.Attempts)
			return nil
		}
		w.metrics.delivered(inv.Function, outcomeError)
		return fmt.Errorf("finish %s/%s: %w", inv.Function, inv.ID, err)
	}
	if out.Status.Final() {
		w.metrics.delivered(inv.Function, string(out.Status))
	} else {
		w.metrics.delivered(inv.Function, outcomeRetry)
	}
	if out.Status.Final() && out.CallbackURL != "" {
		w.callback(ctx, out)
	}
	return nil
}

// handBackTimeout bounds handing a cut-short delivery back at shutdown.
const handBackTimeout = 5 * time.Second

// handBack queues inv, whose delivery shutdown cut short, for another
// attempt at once, so that a worker stopped in an orderly way does not
// leave it to wait out its claim's visibility. The attempt counts: the
// function may have run. A worker killed outright cannot do this; its
// claims lapse instead.
func (w *Worker) handBack(ctx context.Context, inv api.Invocation) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handBackTimeout)
	defer cancel()
	now := w.deps.Now()
	inv.Status, inv.NextAttemptAt, inv.UpdatedAt = api.InvocationQueued, now, now
	inv.LastError = fmt.Sprintf("attempt %d: the worker stopped mid-delivery", inv.Attempts)
	if err := w.deps.Queue.Finish(ctx, inv); err != nil {
		w.log.Info("hand back a cut-short async delivery", "function", inv.Function, "id", inv.ID, "err", err)
	}
}

// hopHeaders are not passed on to the function: hop-by-hop headers, the
// framing the client sets from the body, and the submission's own
// headers (Ebb-Invoke would queue the delivery again).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length", "Host",
	api.HeaderInvoke, api.HeaderCallbackURL, api.HeaderMaxAttempts, api.HeaderInvocationID, HeaderDeliveryID, HeaderAttempt,
}

// Host is the router host of a function by its qualified name.
func Host(function, domain string) string { return function + "." + domain }

// deliver sends inv's request to the router as the function's host.
func (w *Worker) deliver(ctx context.Context, inv api.Invocation, timeout time.Duration) attempt {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := inv.Request.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	method := inv.Request.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, w.cfg.RouterURL+path, bytes.NewReader(inv.Request.Body))
	if err != nil {
		return attempt{err: fmt.Errorf("build request: %w", err)}
	}
	req.Host = Host(inv.Function, w.cfg.Domain)
	for k, vs := range inv.Request.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.Set(HeaderDeliveryID, inv.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(inv.Attempts))
	resp, err := w.deps.Client.Do(req)
	if err != nil {
		return attempt{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxInvocationBody+1))
	if err != nil {
		// The answer's status came; its body broke off. A 5xx is retried
		// anyway, and a status below 500 is the function's answer.
		w.log.Info("async delivery: reading the answer's body", "function", inv.Function, "id", inv.ID, "err", err)
	}
	res := &api.InvocationResult{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body}
	if len(body) > api.MaxInvocationBody {
		res.Body, res.Truncated = body[:api.MaxInvocationBody], true
	}
	return attempt{result: res}
}

// callback POSTs the final inv to its CallbackURL, retrying failures
// with the worker's backoff, and records how it went.
func (w *Worker) callback(ctx context.Context, inv api.Invocation) {
	payload, err := json.Marshal(inv.Public())
	if err != nil {
		inv.CallbackStatus = "Failed: encode: " + err.Error()
	} else {
		for n := 1; ; n++ {
			status, err := w.post(ctx, inv, payload)
			if err == nil {
				inv.CallbackStatus = fmt.Sprintf("Delivered: %d", status)
				w.metrics.callbacks.WithLabelValues("delivered").Inc()
				break
			}
			inv.CallbackStatus = fmt.Sprintf("Failed after %d attempts: %v", n, err)
			if errors.Is(err, callbackurl.ErrRefused) {
				// Where it may not go, no retry will get it.
				inv.CallbackStatus = "Refused: " + err.Error()
				w.metrics.callbacks.WithLabelValues("refused").Inc()
				break
			}
			if n >= w.cfg.CallbackAttempts {
				w.metrics.callbacks.WithLabelValues("failed").Inc()
				break
			}
			if w.deps.Sleep(ctx, backoff(w.cfg.BackoffBase, w.cfg.BackoffCap, n, w.deps.Jitter())) != nil {
				return // shutting down
			}
		}
	}
	if err := w.deps.Queue.Update(ctx, inv); err != nil && ctx.Err() == nil {
		w.log.Warn("record callback status", "function", inv.Function, "id", inv.ID, "err", err)
	}
}

func (w *Worker) post(ctx context.Context, inv api.Invocation, payload []byte) (int, error) {
	// Checked here too, for invocations queued before the policy changed.
	if err := w.cfg.CallbackPolicy.CheckURL(inv.CallbackURL); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, inv.CallbackURL, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.HeaderInvocationID, inv.ID)
	resp, err := w.deps.CallbackClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
