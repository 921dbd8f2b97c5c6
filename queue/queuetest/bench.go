package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
)

// benchRefill is how many invocations ClaimFinish queues at a time when it
// runs dry (outside the timer).
const benchRefill = 1000

const benchParallelism = 8

// Bench runs the queue benchmarks, each on a fresh queue from open (which
// closes it at cleanup): Enqueue, and Claim followed by Finish (one
// delivery's queue work), each sequential and with RunParallel at
// benchParallelism goroutines per CPU (workers mostly wait on I/O, and
// concurrent writers are what group commit is for). ops/s is reported as a
// metric, and the Enqueue ones report their p99 latency.
func Bench(b *testing.B, open func(b *testing.B) queue.Queue) {
	ctx := context.Background()
	body := make([]byte, 256) // about a small JSON request
	newBenchInv := func(id string, created time.Time) api.Invocation {
		inv := newInv(fnA, id, created)
		inv.Request.Body = body
		return inv
	}
	var seq atomic.Int64
	nextID := func() string { return fmt.Sprintf("bench-%012d", seq.Add(1)) }

	enqueue := func(q queue.Queue) error {
		_, _, err := q.Enqueue(ctx, newBenchInv(nextID(), t0))
		return err
	}
	// timedEnqueue also keeps the call's latency, for enqueue-p99-ms: the
	// figure a caller of Ebb-Invoke: async waits on before its 202.
	timedEnqueue := func(q queue.Queue, lat *[]time.Duration) error {
		start := time.Now()
		err := enqueue(q)
		*lat = append(*lat, time.Since(start))
		return err
	}
	b.Run("Enqueue", func(b *testing.B) {
		q := open(b)
		var lat []time.Duration
		b.ReportAllocs()
		for b.Loop() {
			if err := timedEnqueue(q, &lat); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
		reportP99(b, lat)
	})
	b.Run("Enqueue/parallel", func(b *testing.B) {
		q := open(b)
		var (
			mu  sync.Mutex
			all []time.Duration
		)
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var lat []time.Duration
			defer func() {
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
			for pb.Next() {
				if err := timedEnqueue(q, &lat); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
		reportP99(b, all)
	})

	// claimFinish claims one invocation and finishes it, refilling the
	// queue with the timer stopped when it runs dry. Parallel workers may
	// all find it dry at once; each then refills, which only adds stock.
	claimFinish := func(b *testing.B, q queue.Queue, worker string, stopTimer bool) error {
		now := t0.Add(time.Minute)
		for {
			inv, err := q.Claim(ctx, worker, now, time.Minute)
			if errors.Is(err, queue.ErrEmpty) {
				if stopTimer {
					b.StopTimer()
				}
				for range benchRefill {
					if err := enqueue(q); err != nil {
						return err
					}
				}
				if stopTimer {
					b.StartTimer()
				}
				continue
			}
			if err != nil {
				return err
			}
			return q.Finish(ctx, succeed(inv, now))
		}
	}
	b.Run("ClaimFinish", func(b *testing.B) {
		q := open(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := claimFinish(b, q, "w", true); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("ClaimFinish/parallel", func(b *testing.B) {
		q := open(b)
		// Stock enough for the whole run up front: RunParallel cannot stop
		// the timer per goroutine.
		stock := max(b.N, 1)
		for range stock {
			if err := enqueue(q); err != nil {
				b.Fatal(err)
			}
		}
		var w atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			worker := fmt.Sprintf("w%d", w.Add(1))
			for pb.Next() {
				if err := claimFinish(b, q, worker, false); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
}

func reportP99(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p99 := lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(p99)/float64(time.Millisecond), "enqueue-p99-ms")
}

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}
