package invoker

import (
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Limit is what the worker needs of one function's spec.
type Limit struct {
	// MaxConcurrency bounds the function's deliveries in flight at once.
	MaxConcurrency int
	// Timeout is the function's request timeout: a delivery's deadline
	// and claim visibility are it plus Config.VisibilityMargin.
	Timeout time.Duration
}

// Functions tells the worker which functions exist and their limits, by
// qualified name. ebbd passes CacheFunctions over its function cache.
type Functions interface {
	Limits() map[string]Limit
}

// CacheFunctions reads the limits from a cache of the function records.
func CacheFunctions(c *store.Cache[store.Function]) Functions { return cacheFunctions{c} }

type cacheFunctions struct{ c *store.Cache[store.Function] }

func (f cacheFunctions) Limits() map[string]Limit {
	snap := f.c.Snapshot()
	out := make(map[string]Limit, snap.Len())
	for v := range snap.All() {
		out[v.Value.Name] = limitOf(v.Value.Spec)
	}
	return out
}

func limitOf(spec api.FunctionSpec) Limit {
	timeout := spec.Timeout.Duration
	if timeout == 0 {
		timeout = api.DefaultTimeout
	}
	return Limit{MaxConcurrency: spec.AsyncMaxConcurrency(), Timeout: timeout}
}

// defaultLimit is the limit of a function the worker knows nothing of.
var defaultLimit = limitOf(api.FunctionSpec{})
