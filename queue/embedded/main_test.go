package embedded_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if path, ok := os.LookupEnv(crashEnv); ok {
		os.Exit(runCrashChild(path))
	}
	goleak.VerifyTestMain(m)
}
