package audit

import (
	"context"
	"testing"
)

// BenchmarkRecord measures one fsync'ed line, the price every mutating call
// pays on top of its store transaction.
func BenchmarkRecord(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := Event{TokenID: "admin", Namespace: "team-a", Verb: "update", Object: "functions/hello", Status: 200}
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Record(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Record(ctx, e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
