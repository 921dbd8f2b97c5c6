package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/storetest"
)

// go test -run '^$' -bench . -benchtime 2s ./store/embedded/
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := embedded.Open(filepath.Join(b.TempDir(), "bench.db"), embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	})
}
