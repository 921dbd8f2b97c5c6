package replicanet

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPrepare is the network's share of a pool miss: Prepare (netns,
// veth on the bridge, address, route, sysctls, eBPF registration) and the
// Release that follows the replica's end.
func BenchmarkPrepare(b *testing.B) {
	n, cfg := testNet(b, func(c *Config) { c.Registry = &fakeRegistry{} })
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	var prepare, release time.Duration
	for b.Loop() {
		id := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		if _, err := n.Prepare(ctx, id, cfg.PortMin+i%(cfg.PortMax-cfg.PortMin+1)); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := n.Release(ctx, id); err != nil {
			b.Fatal(err)
		}
		prepare += mid.Sub(start)
		release += time.Since(mid)
		i++
	}
	b.ReportMetric(float64(prepare.Microseconds())/1000/float64(i), "prepare-ms")
	b.ReportMetric(float64(release.Microseconds())/1000/float64(i), "release-ms")
}

// BenchmarkPrepareParallel is BenchmarkPrepare with GOMAXPROCS pools filling
// at once.
func BenchmarkPrepareParallel(b *testing.B) {
	n, cfg := testNet(b, func(c *Config) { c.Registry = &fakeRegistry{} })
	ctx := b.Context()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			id := fmt.Sprintf("bench-%d", i)
			if _, err := n.Prepare(ctx, id, cfg.PortMin+i%(cfg.PortMax-cfg.PortMin+1)); err != nil {
				b.Error(err)
				return
			}
			if err := n.Release(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
