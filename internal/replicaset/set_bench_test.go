package replicaset

import (
	"testing"
)

func benchSet(b *testing.B, limit int, ids ...string) *Set {
	g := newRegistry(b)
	g.Update(eps("r", limit, ids...))
	return g.Retain("r")
}

func BenchmarkTryAcquireRelease(b *testing.B) {
	s := benchSet(b, 0, "a", "b", "c", "d")
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Release(s.TryAcquire())
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Release(s.TryAcquire())
			}
		})
	})
}

// BenchmarkEnqueueRelease measures the queue: every operation waits behind
// a full replica and is handed the slot its predecessor releases.
func BenchmarkEnqueueRelease(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		s := benchSet(b, 1, "a")
		w := NewWaiter()
		held := s.TryAcquire()
		b.ReportAllocs()
		for b.Loop() {
			s.Enqueue(w)
			s.Release(held)
			held = <-w.C
		}
		s.Release(held)
	})
	b.Run("parallel", func(b *testing.B) {
		s := benchSet(b, 2, "a")
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			w := NewWaiter()
			for pb.Next() {
				r := s.TryAcquire()
				if r == nil {
					s.Enqueue(w)
					r = <-w.C
				}
				s.Release(r)
			}
		})
	})
}
