package embedded_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/embedded"
	"github.com/ebbrun/ebb/queue/queuetest"
)

// files opens each test's queue on a file named after the test, under one
// directory: the same test reopens the same file.
func files(dir string) func(t *testing.T) queue.Queue {
	return func(t *testing.T) queue.Queue {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		q, err := embedded.Open(filepath.Join(dir, name+".db"), embedded.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = q.Close() })
		return q
	}
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, queuetest.Backend{Open: files(t.TempDir()), Durable: true})
}
