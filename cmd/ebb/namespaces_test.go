package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestNamespaces walks namespaces through the command tree: create, list,
// deploy and use functions in one with -n, isolation from default, and
// delete, refused while serving unless --force.
func TestNamespaces(t *testing.T) {
	c, f := newCLI(t)

	r := c.run(t, "namespaces", "create", "team-a")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created namespace team-a\n", r.stdout)
	r = c.run(t, "ns", "create", "team-a")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "namespace team-a exists already\n", r.stdout)

	r = c.run(t, "-n", "team-a", "deploy", "hello", "--image", "docker.io/library/hello:v1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Created function hello with revision hello.team-a-00001")
	assert.Contains(t, r.stdout, "http://hello.team-a.localhost:8080")
	r = c.run(t, "deploy", "hello", "--image", "docker.io/library/hello:v1", "--env", "WHO=default")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"hello.team-a-00001"}, f.revisionNames("hello.team-a"))
	assert.Equal(t, []string{"hello-00001"}, f.revisionNames("hello"))

	r = c.run(t, "namespaces", "list")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "namespaces_list", r.stdout)

	// Each namespace lists its own functions only.
	r = c.run(t, "list", "--namespace", "team-a", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var list api.FunctionList
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &list))
	require.Len(t, list.Functions, 1)
	assert.Equal(t, "team-a", list.Functions[0].Namespace)
	assert.Equal(t, "http://hello.team-a.localhost:8080", list.Functions[0].URL)
	r = c.run(t, "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &list))
	require.Len(t, list.Functions, 1)
	assert.Equal(t, api.DefaultNamespace, list.Functions[0].Namespace)

	r = c.run(t, "get", "hello", "-n", "team-a")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Namespace:    team-a\n")

	// Generation numbers name the namespace's revisions.
	r = c.run(t, "-n", "team-a", "traffic", "hello", "1=100", "--tag", "1=canary")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "hello.team-a-00001")
	assert.Contains(t, r.stdout, "http://canary-hello.team-a.localhost:8080")
	r = c.run(t, "-n", "team-a", "traffic", "hello", "hello.team-a-00001=100")
	require.Equal(t, 0, r.code, r.stderr)

	r = c.run(t, "-n", "team-a", "revisions", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "hello.team-a-00001")
	assert.NotContains(t, r.stdout, "hello-00001")

	f.logs = "r1 stdout: hi from team-a\n"
	r = c.run(t, "-n", "team-a", "logs", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, f.logs, r.stdout)

	// A namespace that does not exist is named in the error.
	r = c.run(t, "-n", "team-b", "deploy", "hello", "--image", "docker.io/library/hello:v1")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, `namespace "team-b" does not exist`)

	// A delete refused while replicas serve says how to force it.
	f.deleteRefused = true
	r = c.run(t, "namespaces", "delete", "team-a")
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, "ready replicas (hello) (--force deletes it anyway)")
	r = c.run(t, "namespaces", "delete", "team-a", "--force")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted namespace team-a\n", r.stdout)
	r = c.run(t, "-n", "team-a", "get", "hello")
	assert.Equal(t, exitNotFound, r.code)
	r = c.run(t, "get", "hello")
	require.Equal(t, 0, r.code, "default's hello stays: %s", r.stderr)

	r = c.run(t, "namespaces", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var nsList api.NamespaceList
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &nsList))
	assert.Equal(t, []api.Namespace{{Name: "default", Functions: 1}}, nsList.Namespaces)
}

// TestNamespaceFromConfig checks where the namespace comes from: the config
// file's namespace:, then EBB_NAMESPACE, then -n.
func TestNamespaceFromConfig(t *testing.T) {
	base, f := newCLI(t)
	for _, ns := range []string{"from-file", "from-env", "from-flag"} {
		f.namespaces[ns] = api.Namespace{Name: ns}
	}
	f.fns["a.from-file"] = &fakeFn{fn: api.Function{Name: "a", Namespace: "from-file"}}
	f.fns["b.from-env"] = &fakeFn{fn: api.Function{Name: "b", Namespace: "from-env"}}
	f.fns["c.from-flag"] = &fakeFn{fn: api.Function{Name: "c", Namespace: "from-flag"}}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("namespace: from-file\n"), 0o600))
	env := map[string]string{"EBB_CONFIG": cfg}
	for k, v := range base.env {
		env[k] = v
	}
	c := cli{env: env}
	names := func(args ...string) []string {
		r := c.run(t, append([]string{"list", "-o", "json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var list api.FunctionList
		require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &list))
		var out []string
		for _, fn := range list.Functions {
			out = append(out, fn.Namespace+"/"+fn.Name)
		}
		return out
	}
	assert.Equal(t, []string{"from-file/a"}, names())
	env["EBB_NAMESPACE"] = "from-env"
	assert.Equal(t, []string{"from-env/b"}, names())
	assert.Equal(t, []string{"from-flag/c"}, names("-n", "from-flag"))
	assert.Nil(t, names("-n", "default"))
}

func TestNamespaceUsageErrors(t *testing.T) {
	c, f := newCLI(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("namespace: Bad_NS\n"), 0o600))
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad -n", nil, []string{"-n", "Bad_NS", "list"}, `namespace: "Bad_NS" must be a DNS label`},
		{"-n with a dot", nil, []string{"-n", "a.b", "get", "hello"}, `namespace: "a.b" must be a DNS label`},
		{"-n too long", nil, []string{"-n", strings.Repeat("n", 64), "list"}, "longer than 63"},
		{"-n traversal", nil, []string{"-n", "../x", "list"}, "must be a DNS label"},
		{"bad EBB_NAMESPACE", map[string]string{"EBB_NAMESPACE": "é"}, []string{"list"}, "must be a DNS label"},
		{"bad config namespace", map[string]string{"EBB_CONFIG": cfg}, []string{"list"}, `"Bad_NS" must be a DNS label`},
		{"function and namespace too long", nil, []string{"-n", strings.Repeat("n", 40), "deploy", strings.Repeat("f", 30), "--image", "x"}, "too long"},
		{"create bad name", nil, []string{"namespaces", "create", "Team"}, "must be a DNS label"},
		{"create no name", nil, []string{"namespaces", "create"}, "missing NAME"},
		{"delete default", nil, []string{"namespaces", "delete", "default"}, "the default namespace cannot be deleted"},
		{"delete two", nil, []string{"namespaces", "delete", "a", "b"}, `unexpected argument "b"`},
		{"traffic bad revision", nil, []string{"-n", "team-a", "traffic", "hello", "a..b=100"}, "DNS label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := cli{env: map[string]string{}}
			for k, v := range c.env {
				cc.env[k] = v
			}
			for k, v := range tt.env {
				cc.env[k] = v
			}
			r := cc.run(t, tt.args...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
		})
	}
	assert.Len(t, f.namespaces, 1, "no bad name reached the API")
	assert.Empty(t, f.fns)
}
