package nodeloss

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
)

// Plan returns the ops that delete the endpoint records of nodes that are
// not live, each at the version read, and the dead nodes they belong to.
// A nil set (no poll yet) deletes nothing.
func Plan(live *liveness.Set, endpoints []store.Versioned[store.Endpoint]) (ops []store.Op, dead []string) {
	if live == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, ep := range endpoints {
		node := ep.Value.Node
		if live.Live(node) {
			continue
		}
		ops = append(ops, store.Delete(ep.Key, ep.Version))
		if !seen[node] {
			seen[node] = true
			dead = append(dead, node)
		}
	}
	return ops, dead
}

// Liveness is the live node set (internal/liveness.Watcher).
type Liveness interface {
	Set() *liveness.Set
	Subscribe() (<-chan struct{}, func())
}

// Endpoints lists the endpoint records; *store.Cache[store.Endpoint]'s
// Snapshot, or the store itself.
type Endpoints func(ctx context.Context) ([]store.Versioned[store.Endpoint], error)

// FromStore lists the endpoint records from s.
func FromStore(s store.Store) Endpoints {
	return func(ctx context.Context) ([]store.Versioned[store.Endpoint], error) {
		eps, _, err := store.ListJSON[store.Endpoint](ctx, s, store.PrefixEndpoints)
		return eps, err
	}
}

// DefaultEvery is how often Run looks without a change of the live set, to
// catch records written after a lapse was seen.
const DefaultEvery = 5 * time.Second

// batch bounds one transaction, to keep each write small for Redis.
const batch = 64

// Run cleans at once, on every change of the live set, and every `every`
// (0: DefaultEvery) until ctx ends, writing through s (the leader's fenced
// store). A failed clean-up is logged and tried again on the next round.
func Run(ctx context.Context, s store.Store, live Liveness, endpoints Endpoints, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		every = DefaultEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	changes, stop := live.Subscribe()
	defer stop()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := Clean(ctx, s, live.Set(), endpoints); err != nil && ctx.Err() == nil {
			log.Warn("clean up after dead nodes", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-t.C:
		}
	}
}

// Clean applies Plan once.
func Clean(ctx context.Context, s store.Store, live *liveness.Set, endpoints Endpoints) error {
	eps, err := endpoints(ctx)
	if err != nil {
		return fmt.Errorf("list endpoints: %w", err)
	}
	ops, _ := Plan(live, eps)
	var errs error
	for len(ops) > 0 {
		n := min(len(ops), batch)
		if _, err := s.Txn(ctx, ops[:n]...); err != nil {
			// A conflict is a record rewritten since the read: the next
			// round reads it again.
			errs = fmt.Errorf("delete dead nodes' endpoints: %w", err)
		}
		ops = ops[n:]
	}
	return errs
}
