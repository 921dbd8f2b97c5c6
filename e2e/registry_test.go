package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestImagesFromRegistries checks issue 18's registry pulls end to end,
// with real containerd and a real CNCF distribution registry: a function
// whose image names a registry is pulled on demand (over plain HTTP, with
// basic auth from an image pull secret), and a pull the registry refuses
// fails the revision with the registry's message and its requests fast.
func TestImagesFromRegistries(t *testing.T) {
	requireE2E(t)
	open := testenv.StartRegistry(t, testenv.RegistryOptions{})
	locked := testenv.StartRegistry(t, testenv.RegistryOptions{User: "team", Password: "hunter2"})
	d := startEbbd(t, "--insecure-registry", open.Addr, "--insecure-registry", locked.Addr)
	archive := filepath.Join(t.TempDir(), "hello.oci.tar")
	d.ebb("images", "build", binaries.hello, "--name", "team/hello:v1", "-o", archive)
	open.Push(t, archive, open.Addr+"/team/hello:v1")
	locked.Push(t, archive, locked.Addr+"/team/hello:v1")
	// Pulled by no function with good credentials: a node that holds an
	// image runs it without asking its registry again, as Kubernetes'
	// IfNotPresent does.
	locked.Push(t, archive, locked.Addr+"/team/hello:never-pulled")

	t.Run("a plain-HTTP registry: the image is pulled and serves", func(t *testing.T) {
		start := time.Now()
		d.putSpec("pulled", fmt.Sprintf(`{"image":%q}`, open.Addr+"/team/hello:v1"))
		d.waitFor("pulled", time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionReady })
		t.Logf("FIGURE put → ready, with the pull of a %s image: %s", "hello", time.Since(start).Round(time.Millisecond))
		resp, body := d.get("pulled", "/", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "revision=pulled-00001")
	})

	t.Run("two functions of one image: one pull", func(t *testing.T) {
		// Another binary, so that none of its blobs is on the node yet.
		shared := filepath.Join(t.TempDir(), "shared.oci.tar")
		d.ebb("images", "build", binaries.helloworld, "--name", "team/shared:v1", "-o", shared)
		open.Push(t, shared, open.Addr+"/team/shared:v1")
		ref := open.Addr + "/team/shared:v1"
		start := time.Now()
		d.putSpec("shared-a", fmt.Sprintf(`{"image":%q,"scale":{"initial":2}}`, ref))
		d.putSpec("shared-b", fmt.Sprintf(`{"image":%q,"scale":{"initial":2}}`, ref))
		for _, fn := range []string{"shared-a", "shared-b"} {
			d.waitFor(fn, time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionReady })
			resp, body := d.get(fn, "/", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, body)
		}
		t.Logf("FIGURE two functions × 2 replicas of one image, put → both ready: %s", time.Since(start).Round(time.Millisecond))
		blobs := open.RequestPaths("GET", "/v2/team/shared/blobs/")
		require.NotEmpty(t, blobs)
		seen := map[string]bool{}
		for _, p := range blobs {
			assert.False(t, seen[p], "blob %s fetched twice", p)
			seen[p] = true
		}
		manifests := open.RequestPaths("GET", "/v2/team/shared/manifests/")
		assert.Len(t, manifests, 1, "one manifest fetch for four replicas of two functions:\n%s", open.Log())
		t.Logf("FIGURE registry GETs for the shared image: %d manifest, %d blobs %v", len(manifests), len(blobs), blobs)
	})

	t.Run("basic auth with an image pull secret", func(t *testing.T) {
		require.Equal(t, http.StatusCreated, d.apiCall("PUT", "/v1/secrets/regcred",
			strings.NewReader(`{"stringData":{"username":"team","password":"hunter2"}}`), nil))
		d.putSpec("private", fmt.Sprintf(`{"image":%q,"imagePullSecret":"regcred"}`, locked.Addr+"/team/hello:v1"))
		d.waitFor("private", time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionReady })
		resp, body := d.get("private", "/", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	})

	failed := []struct {
		name, fn, spec, message string
	}{
		{"wrong credentials: Failed with the registry's 401, requests fail fast", "badcred",
			fmt.Sprintf(`{"image":%q,"imagePullSecret":"badcred","scale":{"initial":0},"timeout":"2m"}`, locked.Addr+"/team/hello:never-pulled"), "401 Unauthorized"},
		{"a missing tag: Failed with not found", "notag",
			fmt.Sprintf(`{"image":%q,"scale":{"initial":0},"timeout":"2m"}`, open.Addr+"/team/hello:nope"), "not found"},
	}
	require.Equal(t, http.StatusCreated, d.apiCall("PUT", "/v1/secrets/badcred",
		strings.NewReader(`{"stringData":{"username":"team","password":"wrong"}}`), nil))
	for _, tt := range failed {
		t.Run(tt.name, func(t *testing.T) {
			d.putSpec(tt.fn, tt.spec)
			// At once: the request waits at the activator for a replica
			// that cannot start, and must not wait out the 2m timeout.
			sent := time.Now()
			resp, body := d.get(tt.fn, "/", nil)
			waited := time.Since(sent)
			assert.GreaterOrEqual(t, resp.StatusCode, 500, body)
			assert.Less(t, waited, 2*time.Second, "the request failed fast: %s", body)
			t.Logf("FIGURE %s: %d after %s: %s", tt.fn, resp.StatusCode, waited.Round(time.Millisecond), strings.TrimSpace(body))
			rev := d.waitFor(tt.fn, 30*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionFailed })
			assert.Contains(t, rev.Message, tt.message)
			assert.Contains(t, d.ebb("get", tt.fn), tt.message, "ebb get shows why")
			// Again, once it is known Failed: at once.
			sent = time.Now()
			resp, body = d.get(tt.fn, "/", nil)
			assert.GreaterOrEqual(t, resp.StatusCode, 500, body)
			assert.Less(t, time.Since(sent), time.Second)
		})
	}
}

// TestUploadedImagesReachSplitRoles checks that an image uploaded to the
// control plane serves from a node agent in another process with its own
// containerd: the agent pulls it from the control plane's /v2/ with its
// node credential. No ctr import anywhere.
func TestUploadedImagesReachSplitRoles(t *testing.T) {
	requireE2E(t)
	redis := testenv.Redis(t)
	cp := startEbbd(t, "--role", "controlplane", "--store", redis.URL(), "--node-name", "cp")
	cpURL := "http://" + cp.apiAddr
	node := startEbbd(t, "--role", "nodeagent", "--store", redis.URL(), "--node-name", "n1", "--autoscaler-url", cpURL)
	router := startEbbd(t, "--role", "router", "--store", redis.URL(), "--node-name", "r1", "--autoscaler-url", cpURL)
	cp.pushHello()

	start := time.Now()
	cp.putSpec("up", `{"image":"hello:latest"}`)
	cp.waitFor("up", time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionReady })
	t.Logf("FIGURE put → ready on a node that pulled the upload from the control plane: %s", time.Since(start).Round(time.Millisecond))
	resp, body := router.get("up", "/", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "revision=up-00001")
	for _, line := range strings.Split(node.log.String(), "\n") {
		if strings.Contains(line, "pulled image") {
			t.Logf("FIGURE %s", line)
		}
	}
	assert.Contains(t, node.log.String(), "pulled image", "the node pulled it")
	assert.Contains(t, node.log.String(), cp.apiAddr, "from the control plane")
}
