package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// lifecycleEnv is the real API server over an embedded store with image
// hello:latest pushed, and a CLI pointed at it: rollback, untag and
// deploy --tag are about the server's answers (If-Match, 409s), which the
// fake API does not model.
type lifecycleEnv struct {
	cli
	store store.Store
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	token := strings.Repeat("b2", 32)
	srv, err := controlplane.New(controlplane.Config{Token: token, SpoolDir: filepath.Join(dir, "spool")},
		controlplane.Deps{Store: st, Images: noImages{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	const ref = "docker.io/library/hello:latest"
	_, err = st.Txn(context.Background(), store.PutJSON(store.ImageKey(ref), store.Image{Name: ref}, store.AnyVersion))
	require.NoError(t, err)
	return &lifecycleEnv{cli: cli{env: map[string]string{"EBB_API": ts.URL, "EBB_TOKEN": token, "HOME": t.TempDir()}}, store: st}
}

// deploy makes a new revision of fn with env N=n, not waiting (no node
// agent runs here).
func (e *lifecycleEnv) deploy(t *testing.T, fn, n string, extra ...string) result {
	t.Helper()
	return e.run(t, append([]string{"deploy", fn, "--image", "hello:latest", "--env", "N=" + n, "--no-wait"}, extra...)...)
}

func (e *lifecycleEnv) function(t *testing.T, fn string) api.Function {
	t.Helper()
	r := e.run(t, "-o", "json", "get", fn)
	require.Equal(t, 0, r.code, r.stderr)
	var out api.Function
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	return out
}

// split is the function's traffic as "rev=pct[:tag]" strings, @latest
// for a target following the latest.
func split(fn api.Function) []string {
	var out []string
	for _, t := range fn.Traffic {
		name := t.Revision
		if t.LatestRevision {
			name = "@latest"
		}
		s := name + "=" + strconv.Itoa(t.Percent)
		if t.Tag != "" {
			s += ":" + t.Tag
		}
		out = append(out, s)
	}
	return out
}

// fail marks revision rev failed on a node, as a node agent reports it.
func (e *lifecycleEnv) fail(t *testing.T, rev string) {
	t.Helper()
	exit := 1
	_, err := e.store.Txn(context.Background(), store.PutJSON(store.RevStatusKey(rev, "n1"), store.RevisionNodeStatus{
		Revision: rev, Node: "n1", State: api.RevisionFailed, Message: "exec format error", LastExitCode: &exit,
	}, store.AnyVersion))
	require.NoError(t, err)
}

func TestRollback(t *testing.T) {
	e := newLifecycleEnv(t)
	for _, n := range []string{"1", "2", "3", "4"} {
		require.Equal(t, 0, e.deploy(t, "hello", n).code)
	}
	r := e.run(t, "traffic", "hello", "@latest=100", "--tag", "3=canary", "--tag", "4=next")
	require.Equal(t, 0, r.code, r.stderr)
	e.fail(t, "hello-00003")

	// The previous ready revision: 3 failed, so 2; tags keep their URLs.
	r = e.run(t, "rollback", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "hello-00002 takes 100% of the traffic")
	assert.Equal(t, []string{"hello-00002=100", "hello-00003=0:canary", "hello-00004=0:next"}, split(e.function(t, "hello")))

	// Again: from 2 back to 1.
	require.Equal(t, 0, e.run(t, "rollback", "hello").code)
	assert.Equal(t, []string{"hello-00001=100", "hello-00003=0:canary", "hello-00004=0:next"}, split(e.function(t, "hello")))

	// A named one, by generation or name; a tag on it joins its entry.
	require.Equal(t, 0, e.run(t, "rollback", "hello", "4").code)
	assert.Equal(t, []string{"hello-00004=100:next", "hello-00003=0:canary"}, split(e.function(t, "hello")))
	r = e.run(t, "-o", "json", "rollback", "hello", "hello-00002")
	require.Equal(t, 0, r.code, r.stderr)
	var fn api.Function
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &fn))
	assert.Equal(t, []string{"hello-00002=100", "hello-00004=0:next", "hello-00003=0:canary"}, split(fn))
}

func TestRollbackRefused(t *testing.T) {
	e := newLifecycleEnv(t)
	require.Equal(t, 0, e.deploy(t, "solo", "1").code)
	for _, n := range []string{"1", "2"} {
		require.Equal(t, 0, e.deploy(t, "hello", n).code)
	}
	e.fail(t, "hello-00001")
	before := e.function(t, "hello")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no name", []string{"rollback"}, exitUsage, "want NAME"},
		{"too many", []string{"rollback", "hello", "1", "2"}, exitUsage, "at most one REVISION"},
		{"bad function name", []string{"rollback", "Hello"}, exitUsage, "DNS label"},
		{"bad revision", []string{"rollback", "hello", "Bad_Rev"}, exitUsage, `revision "Bad_Rev"`},
		{"generation 0", []string{"rollback", "hello", "0"}, exitUsage, "number from 1"},
		{"@latest", []string{"rollback", "hello", "@latest"}, exitUsage, "name a revision"},
		{"missing function", []string{"rollback", "nope"}, exitNotFound, "nope"},
		{"missing revision", []string{"rollback", "hello", "9"}, exitNotFound, "has no revision hello-00009"},
		{"other function's revision", []string{"rollback", "hello", "solo-00001"}, exitNotFound, "has no revision solo-00001"},
		{"other namespace", []string{"-n", "team-a", "rollback", "hello"}, exitNotFound, "team-a"},
		{"only revision", []string{"rollback", "solo"}, exitNotFound, "no ready revision older than solo-00001"},
		{"previous failed", []string{"rollback", "hello"}, exitNotFound, "no ready revision older than hello-00002"},
		{"named failed", []string{"rollback", "hello", "1"}, exitFailure, "hello-00001 is Failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
			assert.Empty(t, r.stdout)
		})
	}
	after := e.function(t, "hello")
	assert.Equal(t, before.ResourceVersion, after.ResourceVersion, "nothing was written")
}

func TestRevisionsDelete(t *testing.T) {
	e := newLifecycleEnv(t)
	for _, n := range []string{"1", "2", "3", "4"} {
		require.Equal(t, 0, e.deploy(t, "hello", n).code)
	}
	require.Equal(t, 0, e.run(t, "traffic", "hello", "1=100", "--tag", "2=canary").code)

	r := e.run(t, "revisions", "delete", "hello", "3")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted revision hello-00003\n", r.stdout)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no revision", []string{"revisions", "delete", "hello"}, exitUsage, "at least one REVISION"},
		{"no args", []string{"revisions", "delete"}, exitUsage, "at least one REVISION"},
		{"bad name", []string{"revisions", "delete", "hello", "a/b"}, exitUsage, `revision "a/b"`},
		{"@latest", []string{"revisions", "delete", "hello", "@latest"}, exitUsage, "name a revision"},
		{"bad function", []string{"revisions", "delete", "Hello", "1"}, exitUsage, "DNS label"},
		{"routed by percent", []string{"revisions", "delete", "hello", "1"}, exitRejected, "100% of the traffic"},
		{"routed by tag", []string{"revisions", "delete", "hello", "hello-00002"}, exitRejected, `tag "canary"`},
		{"latest", []string{"revisions", "delete", "hello", "4"}, exitRejected, "latest revision"},
		{"already gone", []string{"revisions", "delete", "hello", "3"}, exitNotFound, "hello-00003"},
		{"missing function", []string{"revisions", "delete", "nope", "1"}, exitNotFound, "nope"},
		{"other namespace", []string{"-n", "team-a", "revisions", "delete", "hello", "1"}, exitNotFound, "team-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
		})
	}
	revs := e.run(t, "revisions", "hello")
	require.Equal(t, 0, revs.code)
	for _, rev := range []string{"hello-00001", "hello-00002", "hello-00004"} {
		assert.Contains(t, revs.stdout, rev)
	}
	assert.NotContains(t, revs.stdout, "hello-00003")
}

func TestTrafficUntag(t *testing.T) {
	e := newLifecycleEnv(t)
	for _, n := range []string{"1", "2"} {
		require.Equal(t, 0, e.deploy(t, "hello", n).code)
	}
	require.Equal(t, 0, e.run(t, "traffic", "hello", "1=80", "2=20", "--tag", "1=stable", "--tag", "2=canary", "--tag", "@latest=next").code)
	assert.Equal(t, []string{"hello-00001=80:stable", "hello-00002=20:canary", "@latest=0:next"}, split(e.function(t, "hello")))

	// A tag on a routed target goes, the target stays; a 0% target that
	// only carried the tag goes with it.
	r := e.run(t, "traffic", "hello", "--untag", "canary", "--untag", "next")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"hello-00001=80:stable", "hello-00002=20"}, split(e.function(t, "hello")))

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown tag", []string{"traffic", "hello", "--untag", "canary"}, exitNotFound, `no tag "canary"`},
		{"bad tag", []string{"traffic", "hello", "--untag", "Bad_Tag"}, exitUsage, `--untag "Bad_Tag"`},
		{"with a split", []string{"traffic", "hello", "1=100", "--untag", "stable"}, exitUsage, "--untag takes the function name alone"},
		{"with --tag", []string{"traffic", "hello", "--tag", "1=x", "--untag", "stable"}, exitUsage, "--untag takes the function name alone"},
		{"missing function", []string{"traffic", "nope", "--untag", "stable"}, exitNotFound, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
		})
	}
	assert.Equal(t, []string{"hello-00001=80:stable", "hello-00002=20"}, split(e.function(t, "hello")))
}

func TestDeployTagNoTraffic(t *testing.T) {
	e := newLifecycleEnv(t)
	require.Equal(t, 0, e.deploy(t, "hello", "1").code)

	// The function followed @latest: the split is pinned to 1 first, so 2
	// takes nothing and is reachable at its tag alone.
	r := e.deploy(t, "hello", "2", "--tag", "canary", "--no-traffic")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Pinned the traffic of hello that followed @latest to hello-00001")
	fn := e.function(t, "hello")
	assert.Equal(t, "hello-00002", fn.LatestRevision)
	assert.Equal(t, []string{"hello-00001=100", "hello-00002=0:canary"}, split(fn))
	assert.Equal(t, "http://canary-hello.localhost:8080/", fn.Traffic[1].URL)

	// The next canary takes the tag over; the pinned split stays.
	r = e.deploy(t, "hello", "3", "--tag", "canary", "--no-traffic")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "Pinned")
	assert.Equal(t, []string{"hello-00001=100", "hello-00003=0:canary"}, split(e.function(t, "hello")))

	// --tag alone tags the new revision, which takes what follows @latest.
	require.Equal(t, 0, e.run(t, "traffic", "hello", "1=50", "@latest=50").code)
	r = e.deploy(t, "hello", "4", "--tag", "v4")
	require.Equal(t, 0, r.code, r.stderr)
	fn = e.function(t, "hello")
	assert.Equal(t, []string{"hello-00001=50", "@latest=50", "hello-00004=0:v4"}, split(fn))
	assert.Equal(t, 50, findRevision(fn, "hello-00004").Percent)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no-traffic without a tag", []string{"deploy", "hello", "--env", "N=5", "--no-traffic"}, "--no-traffic needs --tag NAME"},
		{"bad tag", []string{"deploy", "hello", "--env", "N=5", "--tag", "Bad_Tag"}, "--tag"},
		{"new function", []string{"deploy", "fresh", "--image", "hello:latest", "--tag", "canary", "--no-traffic"}, "--no-traffic does not apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, tt.args...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
		})
	}
	assert.Equal(t, "hello-00004", e.function(t, "hello").LatestRevision, "nothing refused was deployed")
	assert.Equal(t, exitNotFound, e.run(t, "get", "fresh").code)
}

// TestRollbackLosesNoConcurrentChange checks the If-Match: a split changed
// between the rollback's read and its write is a 409, not overwritten.
func TestRollbackLosesNoConcurrentChange(t *testing.T) {
	e := newLifecycleEnv(t)
	for _, n := range []string{"1", "2"} {
		require.Equal(t, 0, e.deploy(t, "hello", n).code)
	}
	c, err := api.NewClient(e.env["EBB_API"], e.env["EBB_TOKEN"])
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn, err := c.GetFunction(ctx, "hello")
	require.NoError(t, err)
	_, err = c.SetTraffic(ctx, "hello", []api.TrafficTarget{{Revision: "hello-00001", Percent: 100, Tag: "other"}})
	require.NoError(t, err)
	_, err = c.SetTrafficWith(ctx, "hello", rollbackTraffic(fn, "hello-00001"), api.WriteOptions{IfMatch: fn.ResourceVersion})
	assert.True(t, api.IsConflict(err), "%v", err)
}

// A deploy that starts a rollout says so, and how to follow it.
func TestDeployStartsARollout(t *testing.T) {
	e := newLifecycleEnv(t)
	manifest := filepath.Join(t.TempDir(), "hello.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte(`apiVersion: ebb.dev/v1
kind: Function
metadata:
  name: hello
spec:
  image: hello:latest
  env:
    N: "1"
  rollout:
    steps: [5, 50]
    interval: 10s
`), 0o600))
	require.Equal(t, 0, e.run(t, "apply", "-f", manifest).code)
	r := e.deploy(t, "hello", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Rollout hello-00002 started: canary at 5%, stable hello-00001; follow it with: ebb rollout status hello --watch")
	assert.Equal(t, []string{"hello-00001=95", "hello-00002=5"}, split(e.function(t, "hello")))

	r = e.run(t, "rollout", "abort", "hello", "--reason", "not today")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"hello-00001=100"}, split(e.function(t, "hello")), "an abort gives the stable revision all traffic back")
}
