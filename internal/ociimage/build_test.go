package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildIsDeterministic(t *testing.T) {
	opts := BuildOptions{Name: "hello", Binary: fakeBinary, Env: []string{"A=1"}, ExposedPorts: []int{8080, 9090}, Labels: map[string]string{"b": "2", "a": "1"}}
	var a, b bytes.Buffer
	da, err := Build(&a, opts)
	require.NoError(t, err)
	db, err := Build(&b, opts)
	require.NoError(t, err)
	assert.Equal(t, da, db)
	assert.True(t, bytes.Equal(a.Bytes(), b.Bytes()), "same inputs, same bytes")

	opts.Binary = append([]byte(nil), fakeBinary...)
	opts.Binary[0] ^= 1
	var c bytes.Buffer
	dc, err := Build(&c, opts)
	require.NoError(t, err)
	assert.NotEqual(t, da, dc, "a different binary gives a different digest")
}

func TestBuildWritesARunnableLayout(t *testing.T) {
	var buf bytes.Buffer
	dgst, err := Build(&buf, BuildOptions{
		Name: "ebb/hello:v2", Binary: fakeBinary, BinaryPath: "/app/hello",
		Cmd: []string{"-v"}, Env: []string{"MODE=prod"}, ExposedPorts: []int{8080}, User: "65534:65534",
	})
	require.NoError(t, err)

	files := map[string]tarEntry{}
	for _, e := range readTar(t, buf.Bytes()) {
		files[e.name] = e
	}
	assert.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"].body))

	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(files["index.json"].body, &idx))
	require.Len(t, idx.Manifests, 1)
	md := idx.Manifests[0]
	assert.Equal(t, dgst, md.Digest)
	assert.Equal(t, "docker.io/ebb/hello:v2", md.Annotations[AnnotationImageName])
	assert.Equal(t, "v2", md.Annotations[ocispec.AnnotationRefName])
	assert.Equal(t, runtime.GOARCH, md.Platform.Architecture)

	var m ocispec.Manifest
	require.NoError(t, json.Unmarshal(files[blobPath(md.Digest)].body, &m))
	var cfg ocispec.Image
	require.NoError(t, json.Unmarshal(files[blobPath(m.Config.Digest)].body, &cfg))
	assert.Equal(t, []string{"/app/hello"}, cfg.Config.Entrypoint)
	assert.Equal(t, []string{"-v"}, cfg.Config.Cmd)
	assert.Equal(t, []string{DefaultPath, "MODE=prod"}, cfg.Config.Env)
	assert.Contains(t, cfg.Config.ExposedPorts, "8080/tcp")
	assert.Equal(t, "65534:65534", cfg.Config.User)
	assert.Equal(t, "linux", cfg.OS)
	assert.Equal(t, runtime.GOARCH, cfg.Architecture)

	require.Len(t, m.Layers, 1)
	assert.Equal(t, ocispec.MediaTypeImageLayerGzip, m.Layers[0].MediaType)
	layer := files[blobPath(m.Layers[0].Digest)].body
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, digest.FromBytes(raw), cfg.RootFS.DiffIDs[0])

	rootfs := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		rootfs[hdr.Name] = hdr
		if hdr.Name == "app/hello" {
			body, _ := io.ReadAll(tr)
			assert.Equal(t, fakeBinary, body)
		}
	}
	for _, want := range []string{"app/", "app/hello", "etc/", "etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/hosts", "etc/resolv.conf", "tmp/"} {
		require.Contains(t, rootfs, want)
		assert.Equal(t, 0, rootfs[want].Uid)
	}
	assert.Equal(t, int64(0o755), rootfs["app/hello"].Mode)
	assert.Equal(t, int64(0o1777), rootfs["tmp/"].Mode, "/tmp is world-writable and sticky")
	assert.Equal(t, epoch.Unix(), rootfs["app/hello"].ModTime.Unix())
}

func TestBuildFromBinary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "myfn")
	require.NoError(t, os.WriteFile(p, fakeBinary, 0o755))
	var buf bytes.Buffer
	_, err := BuildFromBinary(&buf, p, BuildOptions{Name: "myfn"})
	require.NoError(t, err)
	a, err := Spool(&buf, t.TempDir(), Limits{})
	require.NoError(t, err)
	defer a.Remove()
	assert.Equal(t, []Image{{Name: "docker.io/library/myfn:latest", Digest: a.Images[0].Digest}}, a.Images)
	found := false
	for _, e := range readTar(t, readFile(t, a.Path)) {
		if e.name == "index.json" {
			found = bytes.Contains(e.body, []byte(`"io.containerd.image.name":"docker.io/library/myfn:latest"`))
		}
	}
	assert.True(t, found)
}

func TestBuildRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts BuildOptions
		want string
	}{
		{"no name", BuildOptions{Binary: fakeBinary}, "name is required"},
		{"bad name", BuildOptions{Name: "Hello", Binary: fakeBinary}, "invalid name"},
		{"no binary", BuildOptions{Name: "x"}, "binary is empty"},
		{"relative path", BuildOptions{Name: "x", Binary: fakeBinary, BinaryPath: "app/x"}, "absolute and clean"},
		{"traversal", BuildOptions{Name: "x", Binary: fakeBinary, BinaryPath: "/app/../x"}, "absolute and clean"},
		{"bad port", BuildOptions{Name: "x", Binary: fakeBinary, ExposedPorts: []int{70000}}, "invalid port"},
		{"file over file", BuildOptions{Name: "x", Binary: fakeBinary, Files: []File{{Path: "/app/main/x"}}}, "under file"},
		{"file over dir", BuildOptions{Name: "x", Binary: fakeBinary, Files: []File{{Path: "/app"}}}, "collides with a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(io.Discard, tt.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "hello", want: "docker.io/library/hello:latest"},
		{in: "hello:v1", want: "docker.io/library/hello:v1"},
		{in: "ebb/hello", want: "docker.io/ebb/hello:latest"},
		{in: "localhost:5000/hello:v1", want: "localhost:5000/hello:v1"},
		{in: "docker.io/library/hello:latest", want: "docker.io/library/hello:latest"},
		{in: "", err: "invalid image name"},
		{in: " hello", err: "invalid image name"},
		{in: "Hello", err: "invalid image name"},
		{in: "hello:bad tag", err: "invalid image name"},
	}
	for _, tt := range tests {
		got, err := NormalizeName(tt.in)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		assert.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

func TestImageName(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"containerd annotation wins", map[string]string{AnnotationImageName: "a:1", ocispec.AnnotationRefName: "b:2"}, "docker.io/library/a:1"},
		{"full ref.name", map[string]string{ocispec.AnnotationRefName: "ebb/b:2"}, "docker.io/ebb/b:2"},
		{"tag-only ref.name names nothing", map[string]string{ocispec.AnnotationRefName: "latest"}, ""},
		{"no annotations", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImageName(tt.ann)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func TestNamesRegistry(t *testing.T) {
	for _, c := range []struct {
		ref      string
		names    bool
		registry string
	}{
		{"hello", false, "docker.io"},
		{"hello:v1", false, "docker.io"},
		{"team/hello:v1", false, "docker.io"},
		{"docker.io/library/hello:v1", true, "docker.io"},
		{"localhost:5000/team/hello:v1", true, "localhost:5000"},
		{"localhost/hello", true, "localhost"},
		{"127.0.0.1:5000/team/hello:v1", true, "127.0.0.1:5000"},
		{"ghcr.io/org/app@sha256:" + strings.Repeat("a", 64), true, "ghcr.io"},
		{"Bad Name", false, ""},
	} {
		t.Run(c.ref, func(t *testing.T) {
			assert.Equal(t, c.names, NamesRegistry(c.ref))
			got, err := Registry(c.ref)
			if c.registry == "" {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.registry, got)
		})
	}
}
