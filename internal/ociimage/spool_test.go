package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func requireEmptyDir(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, left, "Spool left files behind")
}

func TestSpoolAccepts(t *testing.T) {
	symlinkLayer := makeTar(t, []tarEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "./bin/", typ: tar.TypeDir},
		{name: "./bin/app", body: []byte("app")},
		{name: "./bin/sh", typ: tar.TypeSymlink, link: "/bin/app"},
		{name: "./bin/up", typ: tar.TypeSymlink, link: "../../../etc/passwd"},
		{name: "./bin/hard", typ: tar.TypeLink, link: "bin/app"},
		{name: "./run/", typ: tar.TypeDir},
		{name: "./run/fifo", typ: tar.TypeFifo},
	})
	built := builtImage(t, "hello:v1")
	tests := []struct {
		name   string
		data   []byte
		format Format
		images []string
	}{
		{"built OCI layout", built, FormatOCI, []string{"docker.io/library/hello:v1"}},
		{"gzipped OCI layout", gzipBytes(t, built), FormatOCI, []string{"docker.io/library/hello:v1"}},
		{"uncompressed layer", ociArchive(t, ociSpec{}), FormatOCI, []string{"docker.io/library/test:1"}},
		{"zstd layer", ociArchive(t, ociSpec{layerEncoding: "zstd"}), FormatOCI, []string{"docker.io/library/test:1"}},
		{"symlinks and hardlinks inside a layer", ociArchive(t, ociSpec{layer: symlinkLayer, layerEncoding: "gzip"}), FormatOCI, []string{"docker.io/library/test:1"}},
		{"full ref.name", ociArchive(t, ociSpec{annotations: map[string]string{ocispec.AnnotationRefName: "ebb/x:2"}}), FormatOCI, []string{"docker.io/ebb/x:2"}},
		{"docker save", dockerArchive(t, dockerSpec{}), FormatDocker, []string{"docker.io/library/test:1"}},
		{"docker save, gzipped, two tags", gzipBytes(t, dockerArchive(t, dockerSpec{repoTags: []string{"a:1", "a:latest"}})), FormatDocker, []string{"docker.io/library/a:1", "docker.io/library/a:latest"}},
		{"docker save, gzip layer", dockerArchive(t, dockerSpec{layers: [][]byte{gzipBytes(t, symlinkLayer)}}), FormatDocker, []string{"docker.io/library/test:1"}},
		{"dot-slash names", mutate(t, built, func(es []tarEntry) []tarEntry {
			for i := range es {
				es[i].name = "./" + es[i].name
			}
			return append([]tarEntry{{name: "./", typ: tar.TypeDir}}, es...)
		}), FormatOCI, []string{"docker.io/library/hello:v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := Spool(bytes.NewReader(tt.data), dir, Limits{})
			require.NoError(t, err)
			assert.Equal(t, tt.format, a.Format)
			var names []string
			for _, im := range a.Images {
				names = append(names, im.Name)
				if a.Format == FormatOCI {
					assert.NoError(t, im.Digest.Validate())
				}
			}
			assert.Equal(t, tt.images, names)
			spooled := readFile(t, a.Path)
			assert.Equal(t, a.Size, int64(len(spooled)))
			assert.NotEmpty(t, readTar(t, spooled), "the spooled file is a tar")
			if !bytes.HasPrefix(tt.data, gzipMagic) {
				assert.Equal(t, tt.data, spooled, "an uncompressed upload is spooled verbatim")
			}
			require.NoError(t, a.Remove())
			requireEmptyDir(t, dir)
		})
	}
}

func TestSpoolReportsManifestDigest(t *testing.T) {
	var buf bytes.Buffer
	d, err := Build(&buf, BuildOptions{Name: "x", Binary: fakeBinary})
	require.NoError(t, err)
	a, err := Spool(&buf, t.TempDir(), Limits{})
	require.NoError(t, err)
	defer a.Remove()
	assert.Equal(t, []Image{{Name: "docker.io/library/x:latest", Digest: d}}, a.Images)
}

func TestSpoolRejects(t *testing.T) {
	built := builtImage(t, "hello:v1")
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	garbage[0] = 'x' // not gzip magic

	layerWith := func(e tarEntry) []byte {
		return ociArchive(t, ociSpec{layer: makeTar(t, []tarEntry{{name: "ok", body: []byte("ok")}, e}), layerEncoding: "gzip"})
	}
	replace := func(name string, body []byte) func([]tarEntry) []tarEntry {
		return func(es []tarEntry) []tarEntry {
			for i := range es {
				if es[i].name == name {
					es[i].body = body
				}
			}
			return es
		}
	}
	drop := func(pred func(string) bool) func([]tarEntry) []tarEntry {
		return func(es []tarEntry) []tarEntry {
			var out []tarEntry
			for _, e := range es {
				if !pred(e.name) {
					out = append(out, e)
				}
			}
			return out
		}
	}
	add := func(extra ...tarEntry) func([]tarEntry) []tarEntry {
		return func(es []tarEntry) []tarEntry { return append(es, extra...) }
	}
	// The first blob of a built archive is its layer.
	firstBlob := func(es []tarEntry) string {
		for _, e := range es {
			if strings.HasPrefix(e.name, "blobs/sha256/") && e.typ != tar.TypeDir {
				return e.name
			}
		}
		t.Fatal("no blob")
		return ""
	}
	layerName := firstBlob(readTar(t, built))
	bigZeros := make([]byte, 8<<20)

	tests := []struct {
		name     string
		data     []byte
		limits   Limits
		want     string
		tooLarge bool
	}{
		{name: "empty input", data: nil, want: "empty"},
		{name: "not a tar", data: garbage, want: "not a tar archive"},
		{name: "json, not a tar", data: []byte(`{"imageLayoutVersion":"1.0.0"}`), want: "truncated"},
		{name: "zero blocks only", data: make([]byte, 1024), want: "no entries"},
		{name: "truncated mid-entry", data: built[:len(built)/2], want: "truncated"},
		{name: "truncated at a block boundary", data: built[:len(built)-1024], want: "truncated"},
		{name: "truncated gzip", data: func() []byte { g := gzipBytes(t, built); return g[:len(g)-10] }(), want: "truncated"},
		{name: "corrupt gzip checksum", data: func() []byte { g := gzipBytes(t, built); g[len(g)-8] ^= 0xff; return g }(), want: "corrupt gzip"},
		{name: "corrupt gzip header", data: func() []byte { g := gzipBytes(t, built); g[2] = 0x07; return g }(), want: "corrupt gzip"},
		{name: "absolute path", data: mutate(t, built, add(tarEntry{name: "/etc/passwd", body: []byte("x")})), want: "absolute"},
		{name: "dot-dot path", data: mutate(t, built, add(tarEntry{name: "blobs/../../evil", body: []byte("x")})), want: "traversal"},
		{name: "leading dot-dot", data: mutate(t, built, add(tarEntry{name: "../evil", body: []byte("x")})), want: "traversal"},
		{name: "symlink", data: mutate(t, built, add(tarEntry{name: "link", typ: tar.TypeSymlink, link: "/etc/passwd"})), want: "links are not allowed"},
		{name: "escaping symlink", data: mutate(t, built, add(tarEntry{name: "link", typ: tar.TypeSymlink, link: "../../x"})), want: "links are not allowed"},
		{name: "hardlink", data: mutate(t, built, add(tarEntry{name: "hard", typ: tar.TypeLink, link: "index.json"})), want: "links are not allowed"},
		{name: "char device", data: mutate(t, built, add(tarEntry{name: "null", typ: tar.TypeChar})), want: "device and fifo"},
		{name: "block device", data: mutate(t, built, add(tarEntry{name: "sda", typ: tar.TypeBlock})), want: "device and fifo"},
		{name: "fifo", data: mutate(t, built, add(tarEntry{name: "pipe", typ: tar.TypeFifo})), want: "device and fifo"},
		{name: "duplicate entry", data: mutate(t, built, add(tarEntry{name: "index.json", body: []byte("{}")})), want: "duplicate entry"},
		{name: "duplicate after cleaning", data: mutate(t, built, add(tarEntry{name: "./oci-layout", body: []byte("{}")})), want: "duplicate entry"},
		{name: "neither layout nor docker", data: makeTar(t, []tarEntry{{name: "hello.txt", body: []byte("hi")}}), want: "neither an OCI image layout"},
		{name: "missing index.json", data: mutate(t, built, drop(func(n string) bool { return n == "index.json" })), want: "without index.json"},
		{name: "invalid index.json", data: mutate(t, built, replace("index.json", []byte("{not json"))), want: "invalid JSON"},
		{name: "empty index.json", data: mutate(t, built, replace("index.json", []byte(`{"schemaVersion":2,"manifests":[]}`))), want: "lists no images"},
		{name: "bad layout version", data: ociArchive(t, ociSpec{layout: `{"imageLayoutVersion":"2.0.0"}`}), want: "layout version"},
		{name: "manifest references a missing blob", data: mutate(t, built, drop(func(n string) bool { return n == layerName })), want: "not in the archive"},
		{name: "blob does not match its digest", data: mutate(t, built, replace(layerName, []byte("tampered"))), want: "does not match its sha256"},
		{name: "blob name is not a digest", data: mutate(t, built, add(tarEntry{name: "blobs/sha256/abc", body: []byte("x")})), want: "not a sha256 digest"},
		{name: "unsupported digest algorithm", data: mutate(t, built, add(tarEntry{name: "blobs/sha512/abc", body: []byte("x")})), want: "unsupported digest algorithm"},
		{name: "descriptor size mismatch", data: ociArchive(t, ociSpec{sizeDelta: 1}), want: "says"},
		{name: "unsupported manifest media type", data: ociArchive(t, ociSpec{manifestType: "application/vnd.example+json"}), want: "unsupported media type"},
		{name: "foreign layer", data: ociArchive(t, ociSpec{layerType: ocispec.MediaTypeImageLayerNonDistributable}), want: "foreign"}, //nolint:staticcheck
		{name: "unknown layer type", data: ociArchive(t, ociSpec{layerType: "application/x-tar+lz4"}), want: "unsupported layer media type"},
		{name: "diff ID mismatch", data: ociArchive(t, ociSpec{diffID: digest.FromString("other")}), want: "does not match the config"},
		{name: "unnamed OCI image", data: ociArchive(t, ociSpec{annotations: map[string]string{}}), want: "does not name its image"},
		{name: "tag-only ref.name", data: ociArchive(t, ociSpec{annotations: map[string]string{ocispec.AnnotationRefName: "latest"}}), want: "does not name its image"},
		{name: "invalid image name", data: ociArchive(t, ociSpec{annotations: map[string]string{AnnotationImageName: "Bad Name"}}), want: "bad image name"},
		{name: "layer with absolute path", data: layerWith(tarEntry{name: "/etc/shadow", body: []byte("x")}), want: "absolute paths"},
		{name: "layer with dot-dot", data: layerWith(tarEntry{name: "usr/../../etc/shadow", body: []byte("x")}), want: "traversal"},
		{name: "layer hardlink escaping", data: layerWith(tarEntry{name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}), want: "hard link target"},
		{name: "layer device node", data: layerWith(tarEntry{name: "dev/sda", typ: tar.TypeBlock}), want: "device nodes"},
		{name: "layer is not a tar", data: ociArchive(t, ociSpec{layer: garbage}), want: "layer is not a tar"},
		{name: "gzip layer is corrupt", data: ociArchive(t, ociSpec{layer: garbage, layerEncoding: "gzip"}), want: "layer"},
		{name: "docker layer is not a tar", data: dockerArchive(t, dockerSpec{layers: [][]byte{[]byte(`{"this is":"json"}` + strings.Repeat(" ", 600))}}), want: "layer is not a tar"},
		{name: "docker without tags", data: dockerArchive(t, dockerSpec{repoTags: []string{}}), want: "does not name its image"},
		{name: "docker invalid manifest.json", data: dockerArchive(t, dockerSpec{manifest: "[{"}), want: "invalid JSON"},
		{name: "docker manifest.json lists nothing", data: dockerArchive(t, dockerSpec{manifest: "[]"}), want: "lists no images"},
		{name: "docker missing layer", data: dockerArchive(t, dockerSpec{manifest: `[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]}]`}), want: "not in the archive"},
		{name: "docker manifest path traversal", data: dockerArchive(t, dockerSpec{manifest: `[{"Config":"../c.json","RepoTags":["a:1"]}]`}), want: "traversal"},
		{name: "docker bad tag", data: dockerArchive(t, dockerSpec{repoTags: []string{"Not Valid"}}), want: "bad RepoTags"},
		{name: "upload too large", data: built, limits: Limits{MaxCompressedSize: 1024}, want: "upload is larger", tooLarge: true},
		{name: "gzip bomb", data: gzipBytes(t, makeTar(t, []tarEntry{{name: "zeros", body: bigZeros}})), limits: Limits{MaxSize: 1 << 20}, want: "decompresses to more", tooLarge: true},
		{name: "gzip bomb past the ratio", data: gzipBytes(t, makeTar(t, []tarEntry{{name: "zeros", body: bigZeros}})), limits: Limits{RatioMinSize: 1 << 20}, want: "times the", tooLarge: true},
		{name: "too many entries", data: mutate(t, built, add(tarEntry{name: "a"}, tarEntry{name: "b"}, tarEntry{name: "c"})), limits: Limits{MaxEntries: 8}, want: "entries", tooLarge: true},
		{name: "entry too large", data: mutate(t, built, add(tarEntry{name: "big", body: make([]byte, 4096)})), limits: Limits{MaxEntrySize: 2048}, want: "entry is larger", tooLarge: true},
		{name: "layer bomb", data: ociArchive(t, ociSpec{layer: makeTar(t, []tarEntry{{name: "zeros", body: bigZeros}}), layerEncoding: "gzip"}), limits: Limits{MaxUnpackedSize: 1 << 20}, want: "layers decompress", tooLarge: true},
		{name: "too many layer files", data: layerWith(tarEntry{name: "more", body: []byte("x")}), limits: Limits{MaxLayerEntries: 1}, want: "files", tooLarge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := Spool(bytes.NewReader(tt.data), dir, tt.limits)
			require.Error(t, err)
			assert.Nil(t, a)
			var ae *ArchiveError
			require.True(t, errors.As(err, &ae), "want *ArchiveError, got %T: %v", err, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, tt.tooLarge, errors.Is(err, ErrTooLarge), "ErrTooLarge for %v", err)
			requireEmptyDir(t, dir)
		})
	}
}

// failingReader fails after some bytes, like a dropped connection.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestSpoolReadErrorIsNotAnArchiveError(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("connection reset")
	_, err := Spool(&failingReader{r: bytes.NewReader(builtImage(t, "x")), n: 1000, err: boom}, dir, Limits{})
	require.Error(t, err)
	assert.ErrorIs(t, err, boom)
	var ae *ArchiveError
	assert.False(t, errors.As(err, &ae), "an I/O failure is not the uploader's fault")
	requireEmptyDir(t, dir)
}

func TestSpoolMissingDirIsAnIOError(t *testing.T) {
	_, err := Spool(bytes.NewReader(builtImage(t, "x")), "/nonexistent/dir", Limits{})
	require.Error(t, err)
	var ae *ArchiveError
	assert.False(t, errors.As(err, &ae))
}

func TestLimitsValidate(t *testing.T) {
	assert.NoError(t, Limits{}.WithDefaults().Validate())
	assert.Error(t, Limits{MaxSize: -1}.Validate())
	assert.Error(t, Limits{MaxRatio: -1}.Validate())
	assert.Error(t, Limits{RatioMinSize: -1}.Validate())
	_, err := Spool(bytes.NewReader(nil), t.TempDir(), Limits{MaxEntries: -1})
	assert.Error(t, err)
}
