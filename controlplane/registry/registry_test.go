package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/content/local"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/controlplane/registry"
)

// imageStore is an in-memory image store.
type imageStore map[string]images.Image

func (s imageStore) Get(_ context.Context, name string) (images.Image, error) {
	img, ok := s[name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

func (s imageStore) List(context.Context, ...string) ([]images.Image, error) {
	out := make([]images.Image, 0, len(s))
	for _, img := range s {
		out = append(out, img)
	}
	return out, nil
}

type fixture struct {
	srv                     *httptest.Server
	manifest, config, layer ocispec.Descriptor
	manifestBody, layerBody []byte
	otherLayer              ocispec.Descriptor
}

// newFixture holds docker.io/library/hello:v1 (a manifest, its config and
// one layer) and docker.io/library/other:v1, whose layer is not hello's.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	cs, err := local.NewStore(t.TempDir())
	require.NoError(t, err)
	put := func(mediaType string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		require.NoError(t, content.WriteBlob(ctx, cs, d.Digest.String(), strings.NewReader(string(b)), d))
		return d
	}
	f := &fixture{layerBody: []byte("the layer's bytes, pretend they are a tar.gz")}
	image := func(layer []byte) (manifest ocispec.Descriptor, body []byte, cfg, l ocispec.Descriptor) {
		cfg = put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
		l = put(ocispec.MediaTypeImageLayerGzip, layer)
		body, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}})
		require.NoError(t, err)
		return put(ocispec.MediaTypeImageManifest, body), body, cfg, l
	}
	f.manifest, f.manifestBody, f.config, f.layer = image(f.layerBody)
	other, _, _, otherLayer := image([]byte("another layer"))
	f.otherLayer = otherLayer
	imgs := imageStore{
		"docker.io/library/hello:v1": {Name: "docker.io/library/hello:v1", Target: f.manifest},
		"docker.io/library/other:v1": {Name: "docker.io/library/other:v1", Target: other},
	}
	srv, err := registry.New(registry.Config{}, registry.Deps{Images: imgs, Content: cs})
	require.NoError(t, err)
	f.srv = httptest.NewServer(srv)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	// A raw request line: the client must not clean the path.
	req, err := http.NewRequest(method, f.srv.URL, nil)
	require.NoError(t, err)
	req.URL.Opaque = path
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := f.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func TestServesManifestsAndBlobs(t *testing.T) {
	f := newFixture(t)
	repo := "/v2/docker.io/library/hello"
	tests := []struct {
		name, method, path string
		header             http.Header
		status             int
		body               []byte
		contentType        string
		digest             digest.Digest
	}{
		{name: "base", method: "GET", path: "/v2/", status: 200, body: []byte("{}"), contentType: "application/json"},
		{name: "manifest by tag", method: "GET", path: repo + "/manifests/v1", status: 200, body: f.manifestBody, contentType: ocispec.MediaTypeImageManifest, digest: f.manifest.Digest},
		{name: "manifest by tag, HEAD", method: "HEAD", path: repo + "/manifests/v1", status: 200, body: []byte{}, contentType: ocispec.MediaTypeImageManifest, digest: f.manifest.Digest},
		{name: "manifest by digest", method: "GET", path: repo + "/manifests/" + f.manifest.Digest.String(), status: 200, body: f.manifestBody, contentType: ocispec.MediaTypeImageManifest, digest: f.manifest.Digest},
		{name: "layer", method: "GET", path: repo + "/blobs/" + f.layer.Digest.String(), status: 200, body: f.layerBody, contentType: "application/octet-stream", digest: f.layer.Digest},
		{name: "layer, a range", method: "GET", path: repo + "/blobs/" + f.layer.Digest.String(), header: http.Header{"Range": {"bytes=4-8"}}, status: 206, body: f.layerBody[4:9], digest: f.layer.Digest},
		{name: "config", method: "HEAD", path: repo + "/blobs/" + f.config.Digest.String(), status: 200, body: []byte{}, digest: f.config.Digest},
		{name: "the ns query a mirror client adds", method: "GET", path: repo + "/manifests/v1?ns=docker.io", status: 200, body: f.manifestBody, digest: f.manifest.Digest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, tt.header)
			require.Equal(t, tt.status, resp.StatusCode, "%s", body)
			assert.Equal(t, tt.body, body)
			assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
			if tt.contentType != "" {
				assert.Equal(t, tt.contentType, resp.Header.Get("Content-Type"))
			}
			if tt.digest != "" {
				assert.Equal(t, tt.digest.String(), resp.Header.Get("Docker-Content-Digest"))
			}
		})
	}
}

func TestRefusesHostileAndUnknownPaths(t *testing.T) {
	f := newFixture(t)
	repo := "/v2/docker.io/library/hello"
	zero := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"traversal in the name", "GET", "/v2/../../etc/passwd/blobs/" + zero, 400, "NAME_INVALID"},
		{"traversal after the name", "GET", repo + "/blobs/../../../etc/passwd", 400, "DIGEST_INVALID"},
		{"encoded traversal", "GET", "/v2/docker.io/%2e%2e/%2e%2e/blobs/" + zero, 400, "NAME_INVALID"},
		{"a NUL", "GET", repo + "%00/manifests/v1", 400, "NAME_INVALID"},
		{"a digest that is not hex", "GET", repo + "/blobs/sha256:zz", 400, "DIGEST_INVALID"},
		{"a digest too short", "GET", repo + "/blobs/sha256:abcd", 400, "DIGEST_INVALID"},
		{"an unknown algorithm", "GET", repo + "/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"},
		{"a huge name", "GET", "/v2/docker.io/" + strings.Repeat("a/", 600) + "x/manifests/v1", 400, "NAME_INVALID"},
		{"a name over 255 bytes", "GET", "/v2/docker.io/" + strings.Repeat("a", 300) + "/manifests/v1", 400, "NAME_INVALID"},
		{"an upper-case name", "GET", "/v2/docker.io/library/Hello/manifests/v1", 400, "NAME_INVALID"},
		{"a name without its domain", "GET", "/v2/library/hello/manifests/v1", 400, "NAME_INVALID"},
		{"a name with a tag", "GET", "/v2/docker.io/library/hello:v1/manifests/v1", 400, "NAME_INVALID"},
		{"a tag with a semicolon", "GET", repo + "/manifests/v1;rm", 400, "MANIFEST_INVALID"},
		{"an empty tag", "GET", repo + "/manifests/", 400, "MANIFEST_INVALID"},
		{"a tag too long", "GET", repo + "/manifests/" + strings.Repeat("v", 200), 400, "MANIFEST_INVALID"},
		{"an unknown tag", "GET", repo + "/manifests/v2", 404, "MANIFEST_UNKNOWN"},
		{"an unknown repository", "GET", "/v2/docker.io/library/nope/manifests/v1", 404, "MANIFEST_UNKNOWN"},
		{"an unknown blob", "GET", repo + "/blobs/" + zero, 404, "BLOB_UNKNOWN"},
		{"another repository's blob", "GET", repo + "/blobs/" + f.otherLayer.Digest.String(), 404, "BLOB_UNKNOWN"},
		{"a layer as a manifest", "GET", repo + "/manifests/" + f.layer.Digest.String(), 404, "MANIFEST_UNKNOWN"},
		{"the catalog", "GET", "/v2/_catalog", 404, "NAME_UNKNOWN"},
		{"tags", "GET", repo + "/tags/list", 404, "NAME_UNKNOWN"},
		{"a push", "POST", repo + "/blobs/uploads/", 405, "UNSUPPORTED"},
		{"a manifest put", "PUT", repo + "/manifests/v1", 405, "UNSUPPORTED"},
		{"a delete", "DELETE", repo + "/manifests/" + f.manifest.Digest.String(), 405, "UNSUPPORTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, nil)
			require.Equal(t, tt.status, resp.StatusCode, "%s", body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var e struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			require.NoError(t, json.Unmarshal(body, &e), "%s", body)
			require.Len(t, e.Errors, 1)
			assert.Equal(t, tt.code, e.Errors[0].Code)
			assert.NotEmpty(t, e.Errors[0].Message)
			assert.Less(t, len(body), 1024, "the error does not echo a huge path back")
		})
	}
}
