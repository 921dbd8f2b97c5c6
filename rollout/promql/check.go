package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Querier runs one instant query and returns its number, NaN for no
// value. Client is the real one.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) (float64, error)
}

var _ Querier = (*Client)(nil)

// Checker gives the values of a rollout policy's PromQL checks.
type Checker struct {
	Querier Querier
}

// Check expands each check's query with vars, runs them all at once
// (each bounded by the Querier's timeout, so the slowest one, not their
// sum, delays the window) and returns their values in the policy's order,
// the shape of rollout.Observation.PromQL. A check whose query cannot be
// expanded, fails or has no value is NaN, which the rollout core counts
// as Inconclusive; the error joins every failure, each naming its check,
// for the runner to log.
func (c Checker) Check(ctx context.Context, at time.Time, checks []api.PromCheck, vars Vars) ([]float64, error) {
	values := make([]float64, len(checks))
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		values[i] = math.NaN()
		query, err := Expand(check.Query, vars)
		if err != nil {
			errs[i] = fmt.Errorf("promql check %d: %w", i, err)
			continue
		}
		wg.Go(func() {
			v, err := c.Querier.Query(ctx, query, at)
			if err != nil {
				errs[i] = fmt.Errorf("promql check %d: %w", i, err)
				return
			}
			values[i] = v
		})
	}
	wg.Wait()
	return values, errors.Join(errs...)
}
