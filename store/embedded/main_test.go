package embedded_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/storetest"
)

func TestMain(m *testing.M) {
	if _, ok := storetest.CrashChildArg(); ok {
		os.Exit(storetest.RunCrashChild(func(path string) (store.Store, error) {
			return embedded.Open(path, embedded.Options{})
		}))
	}
	goleak.VerifyTestMain(m)
}
