package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/embedded"
	"github.com/ebbrun/ebb/queue/queuetest"
)

func BenchmarkQueue(b *testing.B) {
	queuetest.Bench(b, func(b *testing.B) queue.Queue {
		q, err := embedded.Open(filepath.Join(b.TempDir(), "queue.db"), embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = q.Close() })
		return q
	})
}
