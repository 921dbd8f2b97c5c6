package queuetest_test

import (
	"testing"

	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/queuetest"
)

func TestMemory(t *testing.T) {
	queuetest.Run(t, queuetest.Backend{Open: func(t *testing.T) queue.Queue {
		q := queuetest.NewMemory()
		t.Cleanup(func() { _ = q.Close() })
		return q
	}})
}

func BenchmarkMemory(b *testing.B) {
	queuetest.Bench(b, func(b *testing.B) queue.Queue {
		q := queuetest.NewMemory()
		b.Cleanup(func() { _ = q.Close() })
		return q
	})
}
