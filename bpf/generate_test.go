package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// generatedWithClang is the clang major version the committed objects were
// built with. Other versions may emit different (equally valid) code, so the
// check below only runs with this one; update it when regenerating with
// another clang.
const generatedWithClang = 14

// TestGeneratedObjectsMatchSources re-runs gen.go's go:generate line into a
// temporary directory and checks that the committed ebb_bpfel.o and
// ebb_bpfel.go are exactly what the sources produce. It needs clang and
// llvm-strip, and skips without them: building never needs clang.
func TestGeneratedObjectsMatchSources(t *testing.T) {
	for _, bin := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not on PATH; the committed objects are not checked", bin)
		}
	}
	out, err := exec.Command("clang", "--version").Output()
	require.NoError(t, err)
	m := regexp.MustCompile(`clang version (\d+)\.`).FindSubmatch(out)
	require.NotNil(t, m, "clang --version: %s", out)
	if major, _ := strconv.Atoi(string(m[1])); major != generatedWithClang {
		t.Skipf("committed objects were built with clang %d, this is clang %d", generatedWithClang, major)
	}
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)

	args := generateArgs(t)
	dir := t.TempDir()
	// bpf2go's own flags come before the positional arguments.
	args = append([]string{args[0], args[1], "-output-dir", dir}, args[2:]...)
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	gen, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s: %s", strings.Join(args, " "), gen)

	for _, name := range []string{"ebb_bpfel.o", "ebb_bpfel.go"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		got, err := os.ReadFile(name)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got),
			"committed %s does not match ebb.c and headers/: run `make generate` and commit the result", name)
	}
}

// generateArgs returns the arguments of the go:generate line in gen.go,
// without the leading "go": ["tool", "bpf2go", ...].
func generateArgs(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("gen.go")
	require.NoError(t, err)
	var found []string
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		require.Nil(t, found, "gen.go has more than one go:generate line")
		found = strings.Fields(rest)
	}
	require.True(t, len(found) > 3 && found[0] == "go" && found[1] == "tool" && found[2] == "bpf2go",
		"gen.go: want one `//go:generate go tool bpf2go ...` line, got %q", found)
	return found[1:]
}
