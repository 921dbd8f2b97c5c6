package liveness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Source is where the live set comes from: store/redis's Store or Memory.
// LiveNodes returns the set's generation and, unless known is it already,
// the live nodes (changed true). grace is how long leases outlast an
// outage of the source itself.
type Source interface {
	LiveNodes(ctx context.Context, known int64, grace time.Duration) (gen int64, nodes []string, changed bool, err error)
}

// Defaults for Config.
const (
	DefaultPollInterval = 250 * time.Millisecond
	// A node is gone 2 s after its last renewal, and renews four times
	// in that window, so a stall must last 1.5 s to cost it its lease:
	// fast enough that a dead node's functions are served again from
	// other nodes within 5 s at the median (issue 18's goal).
	DefaultLeaseTTL   = 2 * time.Second
	DefaultRenewEvery = 500 * time.Millisecond
)

// Config configures a Watcher. The zero value is ready to use.
type Config struct {
	// Interval is how often the live set is polled. Default 250ms: a
	// lapsed lease is acted on at most this long after it lapsed.
	Interval time.Duration
	// Grace is how long leases outlast an outage of their source (see
	// Source); about the lease TTL. Default DefaultLeaseTTL.
	Grace time.Duration
	// Timeout bounds one poll. Default Interval*4.
	Timeout time.Duration
}

// WithDefaults fills in the zero fields.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultPollInterval
	}
	if c.Grace == 0 {
		c.Grace = DefaultLeaseTTL
	}
	if c.Timeout == 0 {
		c.Timeout = 4 * c.Interval
	}
	return c
}

// Validate reports whether the config is usable.
func (c Config) Validate() error {
	if c.Interval < 0 || c.Grace < 0 || c.Timeout < 0 {
		return fmt.Errorf("liveness: negative interval, grace or timeout")
	}
	return nil
}

// Set is one generation of the live set. It is immutable.
type Set struct {
	Gen   int64
	nodes map[string]bool
}

// NewSet returns the set of nodes at generation gen.
func NewSet(gen int64, nodes []string) *Set {
	m := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		m[n] = true
	}
	return &Set{Gen: gen, nodes: m}
}

// Live reports whether node's lease held at this generation. A nil Set
// (nothing polled yet) and a record without a node count as live: nothing
// is dropped on no evidence.
func (s *Set) Live(node string) bool {
	return s == nil || node == "" || s.nodes[node]
}

// Len is how many nodes are live.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.nodes)
}

// Watcher polls a Source and keeps the newest live set, for lock-free
// reads on the request path and a wake-up for whoever acts on a change.
type Watcher struct {
	src Source
	cfg Config
	log *slog.Logger

	set   atomic.Pointer[Set]
	ready chan struct{}

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	failed bool // the last poll failed; logged once per outage
}

// NewWatcher returns a Watcher of src; Run starts it.
func NewWatcher(src Source, cfg Config, log *slog.Logger) (*Watcher, error) {
	if src == nil {
		return nil, errors.New("liveness: a source is required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{src: src, cfg: cfg, log: log, ready: make(chan struct{}), subs: map[chan struct{}]struct{}{}}, nil
}

// Set returns the newest live set; nil before the first poll answered.
func (w *Watcher) Set() *Set { return w.set.Load() }

// Live reports whether node is live in the newest set.
func (w *Watcher) Live(node string) bool { return w.set.Load().Live(node) }

// Ready is closed once a poll has answered.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Subscribe returns a channel that receives (without blocking the Watcher;
// wake-ups coalesce) after every change of the live set, and a function
// that ends the subscription.
func (w *Watcher) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

// Run polls every cfg.Interval until ctx ends. A failed poll keeps the
// last set: with the source unreachable, the last known state serves.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll asks the source once and publishes a changed set. It reports
// whether the set changed.
func (w *Watcher) Poll(ctx context.Context) bool {
	known := int64(-1)
	if s := w.set.Load(); s != nil {
		known = s.Gen
	}
	pctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	gen, nodes, changed, err := w.src.LiveNodes(pctx, known, w.cfg.Grace)
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if !w.failed && ctx.Err() == nil {
			w.log.Warn("cannot poll the live nodes; keeping the last set", "err", err)
		}
		w.failed = true
		return false
	}
	w.failed = false
	if !changed {
		return false
	}
	prev := w.set.Load()
	next := NewSet(gen, nodes)
	w.set.Store(next)
	if prev == nil {
		close(w.ready)
	}
	for n := range prev.all() {
		if !next.nodes[n] {
			w.log.Info("node lease lapsed", "node", n)
		}
	}
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return true
}

// all yields the live nodes.
func (s *Set) all() func(func(string) bool) {
	return func(yield func(string) bool) {
		if s == nil {
			return
		}
		for n := range s.nodes {
			if !yield(n) {
				return
			}
		}
	}
}
