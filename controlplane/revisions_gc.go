package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Revision garbage collection: every function keeps its routed, tagged and
// latest revisions, the newest History of the others, and any other younger
// than MinAge; the rest are deleted as DELETE .../revisions/{rev} deletes
// one. chooseRevisionGarbage is the pure choice, RunRevisionGC the loop.

// Defaults of RevisionGCConfig.
const (
	DefaultRevisionHistory = 10
	DefaultRevisionMinAge  = time.Hour
	DefaultRevisionGCEvery = time.Minute
)

// RevisionGCConfig configures RunRevisionGC. The zero value of each field
// means its default.
type RevisionGCConfig struct {
	// History is how many unrouted revisions each function keeps, the
	// newest first (ebbd --revision-history). Default 10; negative is
	// refused.
	History int
	// MinAge keeps an unrouted revision younger than it even past
	// History (ebbd --revision-min-age), so one just moved off the route
	// can still be rolled back to. Default 1h.
	MinAge time.Duration
	// Every is how often the collector runs. Default 1m.
	Every time.Duration
}

func (c RevisionGCConfig) withDefaults() RevisionGCConfig {
	if c.History == 0 {
		c.History = DefaultRevisionHistory
	}
	if c.MinAge == 0 {
		c.MinAge = DefaultRevisionMinAge
	}
	if c.Every == 0 {
		c.Every = DefaultRevisionGCEvery
	}
	return c
}

// Validate reports a setting the collector cannot use.
func (c RevisionGCConfig) Validate() error {
	switch {
	case c.History < 0:
		return fmt.Errorf("revision history %d must not be negative", c.History)
	case c.MinAge < 0:
		return fmt.Errorf("revision min age %s must not be negative", c.MinAge)
	case c.Every < 0:
		return fmt.Errorf("revision gc interval %s must not be negative", c.Every)
	}
	return nil
}

// chooseRevisionGarbage returns the revisions of one function to delete at
// now, oldest first: of the revisions not in pinned (routed, tagged,
// latest: revisionPins), all but the newest history, and of those only
// the ones at least minAge old. Newest is by generation, which only grows.
func chooseRevisionGarbage(now time.Time, revs []store.Revision, pinned map[string]string, history int, minAge time.Duration) []string {
	unpinned := make([]store.Revision, 0, len(revs))
	for _, r := range revs {
		if _, ok := pinned[r.Name]; !ok {
			unpinned = append(unpinned, r)
		}
	}
	slices.SortFunc(unpinned, func(a, b store.Revision) int { return b.Generation - a.Generation })
	var out []string
	for i, r := range unpinned {
		if i < history || now.Sub(r.CreatedAt) < minAge {
			continue
		}
		out = append(out, r.Name)
	}
	slices.Reverse(out)
	return out
}

// RunRevisionGC collects revision garbage every cfg.Every until ctx ends.
// ebbd runs it on the leading control plane only (internal/leader). Were
// two to run it, that would still be safe, since every delete re-checks
// its revision in a compare-and-swap transaction, only wasteful.
func (s *Server) RunRevisionGC(ctx context.Context, cfg RevisionGCConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	cfg = cfg.withDefaults()
	ticker := time.NewTicker(cfg.Every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		deleted, err := s.collectRevisions(ctx, cfg)
		if err != nil && ctx.Err() == nil {
			// The next tick tries again; what was deleted stays deleted.
			s.deps.Logger.Warn("revision gc", "err", err)
		}
		if len(deleted) > 0 {
			s.deps.Logger.Info("revision gc deleted revisions", "revisions", deleted)
		}
	}
}

// collectRevisions is one pass of the collector over every function: it
// returns the revisions it deleted and what went wrong on the way (a
// revision routed meanwhile is skipped, not an error).
func (s *Server) collectRevisions(ctx context.Context, cfg RevisionGCConfig) ([]string, error) {
	fns, _, err := store.ListJSON[store.Function](ctx, s.deps.Store, store.PrefixFunctions)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	all, _, err := store.ListJSON[store.Revision](ctx, s.deps.Store, store.PrefixRevisions)
	if err != nil {
		return nil, fmt.Errorf("list revisions: %w", err)
	}
	byFunction := map[string][]store.Revision{}
	for _, r := range all {
		byFunction[r.Value.Function] = append(byFunction[r.Value.Function], r.Value)
	}
	now := s.deps.Now()
	var deleted []string
	var errs []error
	for _, fn := range fns {
		revs := byFunction[fn.Value.Name]
		for _, rev := range chooseRevisionGarbage(now, revs, revisionPins(fn.Value, revs), cfg.History, cfg.MinAge) {
			err := s.removeRevision(ctx, fn.Value.Name, rev)
			var he *httpError
			switch {
			case err == nil:
				deleted = append(deleted, rev)
			case errors.As(err, &he) && (he.status == 409 || he.code == api.CodeNotFound):
				// Routed, or gone with its function, since the listing.
			default:
				errs = append(errs, fmt.Errorf("delete revision %s: %w", rev, err))
			}
		}
	}
	return deleted, errors.Join(errs...)
}
