package testenv

import (
	"fmt"
	"os"
	"os/exec"
)

// GoBuild runs `go build -o out pkg` with the environment plus env (such
// as "CGO_ENABLED=0" for a static binary to put in an image), and returns
// the compiler's output with any error. It takes no testing.TB so that
// TestMain and sync.Once builds can use it.
func GoBuild(out, pkg string, env ...string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
