package layering

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/ebbrun/ebb/"

// components are the top-level rooms that run as parts of ebbd. A
// subpackage belongs to its component (nodeagent/containerd is nodeagent).
var components = []string{"router", "activator", "autoscaler", "nodeagent", "controlplane", "invoker"}

// componentOf names the component a package of this module belongs to, or
// "" for shared packages (api, store, bpf, internal/...) and for programs,
// tests and benchmarks (cmd/..., e2e, deploy, examples), which may compose
// components.
func componentOf(pkg string) string {
	rel := strings.TrimPrefix(pkg, module)
	for _, c := range components {
		if rel == c || strings.HasPrefix(rel, c+"/") {
			return c
		}
	}
	return ""
}

// composes says whether a package may import components: the programs, the
// suites that start whole processes, the benchmarks, and the in-process
// test of the router and activator together.
func composes(pkg string) bool {
	rel := strings.TrimPrefix(pkg, module)
	for _, root := range []string{"cmd", "e2e", "deploy", "examples", "bench", "internal/dataplanetest"} {
		if rel == root || strings.HasPrefix(rel, root+"/") {
			return true
		}
	}
	return false
}

func TestComponentsDoNotImportEachOther(t *testing.T) {
	// Imports and test imports, so a test cannot reach into another
	// component either.
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`,
		module+"...").Output()
	require.NoError(t, err, "go list")

	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Greater(t, len(lines), 20, "go list found too few packages")
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		if composes(pkg) {
			continue
		}
		own := componentOf(pkg)
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			other := componentOf(imp)
			if other == "" || other == own {
				continue
			}
			if own == "" {
				assert.Failf(t, "shared package imports a component", "%s imports %s", pkg, imp)
			} else {
				assert.Failf(t, "component imports another", "%s (%s) imports %s (%s)", pkg, own, imp, other)
			}
		}
	}
	for _, c := range components {
		assert.Contains(t, strings.Join(lines, "\n"), module+c+" ", "component %s not listed", c)
	}
}

func TestComponentOf(t *testing.T) {
	for _, tc := range []struct{ pkg, want string }{
		{module + "router", "router"},
		{module + "nodeagent/containerd", "nodeagent"},
		{module + "nodeagentx", ""},
		{module + "internal/replicaset", ""},
		{module + "store", ""},
	} {
		assert.Equal(t, tc.want, componentOf(tc.pkg), tc.pkg)
	}
}
