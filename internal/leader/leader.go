package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/store"
)

// Leases is where the leadership lease lives: store/redis's Store or
// liveness.Memory.
type Leases interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Defaults for Config.
const (
	DefaultName       = "controlplane"
	DefaultTTL        = 3 * time.Second
	DefaultRenewEvery = 500 * time.Millisecond
)

// RecordKey is the store key of the leadership record of the lease name.
func RecordKey(name string) string { return "leader/" + name }

// Record is the leadership record: who leads, since when, where its API is.
type Record struct {
	Holder string    `json:"holder"`
	Addr   string    `json:"addr,omitempty"`
	Since  time.Time `json:"since"`
}

// Config configures an Elector.
type Config struct {
	// Name of the lease and of the record. Default DefaultName.
	Name string
	// Holder names this process; unique among the candidates. Required.
	Holder string
	// Addr is this process's API address, for the record; optional.
	Addr string
	// TTL is how long the lease lasts unrenewed: the longest a dead
	// leader holds the lead. Default 3s.
	TTL time.Duration
	// RenewEvery is how often the leader renews and a candidate tries to
	// take the lease. Default 500ms; less than TTL/2.
	RenewEvery time.Duration
}

// WithDefaults fills in the zero fields.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = DefaultRenewEvery
	}
	return c
}

// Validate reports whether a defaulted config is usable.
func (c Config) Validate() error {
	if c.Holder == "" {
		return errors.New("leader: a holder name is required")
	}
	if c.TTL <= 0 || c.RenewEvery <= 0 || 2*c.RenewEvery >= c.TTL {
		return fmt.Errorf("leader: renew every %s must be positive and under half the TTL %s", c.RenewEvery, c.TTL)
	}
	return nil
}

// Elector campaigns for the lease and runs the leader's loops while it
// holds it.
type Elector struct {
	cfg    Config
	leases Leases
	store  store.Store
	log    *slog.Logger
	now    func() time.Time

	leading atomic.Bool
	terms   atomic.Int64
}

// New returns an Elector; Run starts it.
func New(cfg Config, leases Leases, s store.Store, log *slog.Logger) (*Elector, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if leases == nil || s == nil {
		return nil, errors.New("leader: leases and a store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, leases: leases, store: s, log: log, now: time.Now}, nil
}

// Leading reports whether this process leads now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Terms is how many times this process has taken the lead.
func (e *Elector) Terms() int64 { return e.terms.Load() }

// Run campaigns until ctx ends. Each time it takes the lead it calls lead
// with a context that ends when the lead is lost and with the store fenced
// at its leadership record, and waits for lead to return before it
// campaigns again. An error from lead while leading ends Run. On the way
// out it gives the lease up, so another takes over at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, s store.Store) error) error {
	t := time.NewTicker(e.cfg.RenewEvery)
	defer t.Stop()
	for {
		deadline, ok := e.acquire(ctx)
		if ok {
			if err := e.term(ctx, t, deadline, lead); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = e.leases.ReleaseLease(rctx, e.cfg.Name, e.cfg.Holder)
			cancel()
			return nil
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// acquire tries the lease once. The deadline is measured from before the
// call, so this process believes it leads no longer than the lease lasts.
func (e *Elector) acquire(ctx context.Context) (time.Time, bool) {
	start := e.now()
	actx, cancel := context.WithTimeout(ctx, e.cfg.RenewEvery)
	ok, err := e.leases.AcquireLease(actx, e.cfg.Name, e.cfg.Holder, e.cfg.TTL)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Debug("leader lease", "err", err)
		}
		return time.Time{}, false
	}
	return start.Add(e.cfg.TTL), ok
}

// term is one term as leader: write the record, run lead fenced at it,
// renew until the lease is lost or ctx ends, then stop lead.
func (e *Elector) term(ctx context.Context, t *time.Ticker, deadline time.Time, lead func(context.Context, store.Store) error) error {
	rec := Record{Holder: e.cfg.Holder, Addr: e.cfg.Addr, Since: e.now()}
	wctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
	version, err := e.store.Txn(wctx, store.PutJSON(RecordKey(e.cfg.Name), rec, store.AnyVersion))
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("took the leader lease but could not write the leadership record", "err", err)
		}
		return nil
	}
	e.leading.Store(true)
	e.terms.Add(1)
	e.log.Info("leading", "holder", e.cfg.Holder, "version", version)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- lead(lctx, store.Fenced(e.store, RecordKey(e.cfg.Name), version)) }()
	defer func() {
		stop()
		e.leading.Store(false)
	}()
	for {
		timer := time.NewTimer(time.Until(deadline))
		select {
		case err := <-done:
			timer.Stop()
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("the leader's loops ended")
			}
			return fmt.Errorf("leader: %w", err)
		case <-ctx.Done():
			timer.Stop()
			stop()
			<-done
			return nil
		case <-timer.C:
			e.log.Warn("lost the lead: the lease ran out before it was renewed")
			stop()
			<-done
			return nil
		case <-t.C:
			timer.Stop()
			next, ok := e.acquire(ctx)
			switch {
			case ok:
				deadline = next
			case !next.IsZero():
				e.log.Warn("lost the lead: another holds the lease")
				stop()
				<-done
				return nil
			}
		}
	}
}

// ErrNotLeader is what a TermStore's Txn returns between terms. It wraps
// store.ErrConflict: to a writer it is a check that failed.
var ErrNotLeader = fmt.Errorf("not the leader: %w", store.ErrConflict)

// TermStore is the leader's store for components built once and run in
// every term: Txn goes through the current term's fenced store, and fails
// with ErrNotLeader between terms. Reads and watches are the store's.
type TermStore struct {
	store.Store
	cur atomic.Pointer[store.Store]
}

// NewTermStore returns a TermStore over s, between terms.
func NewTermStore(s store.Store) *TermStore { return &TermStore{Store: s} }

// Begin makes Txn write through fenced, the store of a new term.
func (t *TermStore) Begin(fenced store.Store) { t.cur.Store(&fenced) }

// End ends the term: Txn fails until the next Begin.
func (t *TermStore) End() { t.cur.Store(nil) }

// Txn implements store.Store.
func (t *TermStore) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	p := t.cur.Load()
	if p == nil {
		return 0, ErrNotLeader
	}
	return (*p).Txn(ctx, ops...)
}

// Close does not close the store, which its owner closes.
func (t *TermStore) Close() error { return nil }
