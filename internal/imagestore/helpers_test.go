package imagestore_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"path"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
)

// layoutFiles reads an OCI layout tar written by ociimage.Build.
type layoutFiles struct {
	order []string
	files map[string][]byte
}

func readLayout(t *testing.T, b []byte) *layoutFiles {
	t.Helper()
	l := &layoutFiles{files: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return l
		}
		require.NoError(t, err)
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		l.order = append(l.order, hdr.Name)
		l.files[hdr.Name] = body
	}
}

func blobName(d digest.Digest) string { return path.Join("blobs", "sha256", d.Encoded()) }

// parts returns the single manifest, its config and the index.
func (l *layoutFiles) parts(t *testing.T) (ocispec.Index, ocispec.Manifest, ocispec.Image) {
	t.Helper()
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(l.files["index.json"], &idx))
	var m ocispec.Manifest
	require.NoError(t, json.Unmarshal(l.files[blobName(idx.Manifests[0].Digest)], &m))
	var cfg ocispec.Image
	require.NoError(t, json.Unmarshal(l.files[blobName(m.Config.Digest)], &cfg))
	return idx, m, cfg
}

func (l *layoutFiles) tar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range l.order {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(l.files[name])), Typeflag: tar.TypeReg}))
		_, err := tw.Write(l.files[name])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func (l *layoutFiles) put(name string, body []byte) {
	if _, ok := l.files[name]; !ok {
		l.order = append(l.order, name)
	}
	l.files[name] = body
}

// withWrongDiffID rewrites a built layout so its config claims a diff ID
// the layer does not have. Spool would refuse it; Import gets it directly
// to prove an unpack failure after ingest rolls back.
func withWrongDiffID(t *testing.T, archive []byte) []byte {
	t.Helper()
	l := readLayout(t, archive)
	idx, m, cfg := l.parts(t)
	cfg.RootFS.DiffIDs[0] = digest.FromString("not the layer")
	cfgJSON, err := json.Marshal(cfg)
	require.NoError(t, err)
	m.Config.Digest, m.Config.Size = digest.FromBytes(cfgJSON), int64(len(cfgJSON))
	l.put(blobName(m.Config.Digest), cfgJSON)
	mJSON, err := json.Marshal(m)
	require.NoError(t, err)
	l.put(blobName(digest.FromBytes(mJSON)), mJSON)
	idx.Manifests[0].Digest, idx.Manifests[0].Size = digest.FromBytes(mJSON), int64(len(mJSON))
	idxJSON, err := json.Marshal(idx)
	require.NoError(t, err)
	l.put("index.json", idxJSON)
	// Keep index.json last, as a writer would.
	for i, n := range l.order {
		if n == "index.json" {
			l.order = append(append(l.order[:i:i], l.order[i+1:]...), "index.json")
			break
		}
	}
	return l.tar(t)
}

// toDockerSave repackages a built layout the way `docker save` lays out
// an image: <config>.json, <id>/layer.tar and manifest.json with RepoTags.
func toDockerSave(t *testing.T, archive []byte, tag string) []byte {
	t.Helper()
	l := readLayout(t, archive)
	_, m, _ := l.parts(t)
	out := &layoutFiles{files: map[string][]byte{}}
	cfgName := m.Config.Digest.Encoded() + ".json"
	out.put(cfgName, l.files[blobName(m.Config.Digest)])
	layerName := m.Layers[0].Digest.Encoded() + "/layer.tar"
	out.put(layerName, l.files[blobName(m.Layers[0].Digest)])
	manifest, err := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{tag}, "Layers": []string{layerName}}})
	require.NoError(t, err)
	out.put("manifest.json", manifest)
	return out.tar(t)
}
