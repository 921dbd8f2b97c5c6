package containerd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
)

// helloArchive builds examples/hello as an OCI archive named name.
func helloArchive(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hello.oci.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	_, err = ociimage.BuildFromBinary(f, helloBinary(t), ociimage.BuildOptions{Name: name})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return p
}

// pullRuntime is a runtime in a containerd namespace of its own, which
// holds no image yet: a node that has pulled nothing.
func pullRuntime(t *testing.T) *ctrd.Runtime {
	t.Helper()
	rt, err := ctrd.New(connect(t), ctrd.Config{
		Namespace: fmt.Sprintf("pull-%d", time.Now().UnixNano()),
		FIFODir:   filepath.Join(t.TempDir(), "fifo"),
	})
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	return rt
}

// TestPullFromARealRegistry pulls from a CNCF distribution registry over
// plain HTTP, anonymously and with basic auth, and fails as the registry
// says when it refuses.
func TestPullFromARealRegistry(t *testing.T) {
	testenv.RequireRoot(t)
	archive := helloArchive(t, "team/hello:v1")
	open := testenv.StartRegistry(t, testenv.RegistryOptions{})
	open.Push(t, archive, open.Addr+"/team/hello:v1")
	locked := testenv.StartRegistry(t, testenv.RegistryOptions{User: "team", Password: "hunter2"})
	locked.Push(t, archive, locked.Addr+"/team/hello:v1")
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

	tests := []struct {
		name string
		ref  string
		src  nodeagent.PullSource
		// err is part of the pull's error; empty means it succeeds.
		err string
	}{
		{name: "anonymous", ref: open.Addr + "/team/hello:v1", src: nodeagent.PullSource{PlainHTTP: true}},
		{name: "basic auth", ref: locked.Addr + "/team/hello:v1", src: nodeagent.PullSource{PlainHTTP: true, Username: "team", Password: "hunter2"}},
		{name: "wrong password", ref: locked.Addr + "/team/hello:v1", src: nodeagent.PullSource{PlainHTTP: true, Username: "team", Password: "wrong"}, err: "401 Unauthorized"},
		{name: "no credentials", ref: locked.Addr + "/team/hello:v1", src: nodeagent.PullSource{PlainHTTP: true}, err: "401 Unauthorized"},
		{name: "a missing tag", ref: open.Addr + "/team/hello:v2", src: nodeagent.PullSource{PlainHTTP: true}, err: "not found"},
		{name: "a missing repository", ref: open.Addr + "/team/nope:v1", src: nodeagent.PullSource{PlainHTTP: true}, err: "not found"},
		{name: "nothing listening", ref: closed + "/team/hello:v1", src: nodeagent.PullSource{PlainHTTP: true}, err: "connection refused"},
		{name: "HTTPS to a plain-HTTP registry", ref: open.Addr + "/team/hello:v1", src: nodeagent.PullSource{}, err: "server gave HTTP response to HTTPS client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := pullRuntime(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			err := rt.Pull(ctx, tt.ref, tt.src)
			if tt.err != "" {
				require.Error(t, err)
				t.Logf("the pull fails: %v", err)
				assert.Contains(t, err.Error(), tt.err)
				_, err = rt.Image(ctx, tt.ref)
				assert.ErrorIs(t, err, nodeagent.ErrNotFound, "a failed pull leaves no image")
				return
			}
			require.NoError(t, err)
			t.Logf("pulled %s in %s", tt.ref, time.Since(start))
			img, err := rt.Image(ctx, tt.ref)
			require.NoError(t, err)
			assert.Equal(t, []string{"/app/hello"}, img.Entrypoint)
			require.NoError(t, rt.CheckExecutable(ctx, tt.ref, "/app/hello", img.Env), "unpacked")
		})
	}
}
