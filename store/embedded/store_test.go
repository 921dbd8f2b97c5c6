package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/storetest"
)

func newStore(t *testing.T, history int) func() (store.Store, error) {
	path := filepath.Join(t.TempDir(), "ebb.db")
	return func() (store.Store, error) {
		return embedded.Open(path, embedded.Options{History: history})
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newStore)
}
