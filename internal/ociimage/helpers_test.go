package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntry is one entry for makeTar. Zero typ means a regular file.
type tarEntry struct {
	name string
	typ  byte
	body []byte
	link string
}

func makeTar(tb testing.TB, entries []tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link, ModTime: epoch}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if typ == tar.TypeChar || typ == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(e.body); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// readTar lists the entries of an archive, for mutation.
func readTar(tb testing.TB, b []byte) []tarEntry {
	tb.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, tarEntry{name: hdr.Name, typ: hdr.Typeflag, body: body, link: hdr.Linkname})
	}
}

func gzipBytes(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(tb testing.TB, b []byte) []byte {
	tb.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// fakeBinary stands in for an executable; Spool never runs it.
var fakeBinary = []byte("\x7fELF this is not really a program, but Spool only reads tars")

func builtImage(tb testing.TB, name string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := Build(&buf, BuildOptions{Name: name, Binary: fakeBinary, BinaryPath: "/app/hello", ExposedPorts: []int{8080}}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// ociSpec describes an OCI layout for ociArchive; zero fields are sensible.
type ociSpec struct {
	layer         []byte // uncompressed layer tar; default one small file
	layerEncoding string // "", "gzip", "zstd"
	annotations   map[string]string
	diffID        digest.Digest // override the config's diff ID
	layerType     string        // override the layer media type
	manifestType  string        // override the manifest media type
	sizeDelta     int64         // added to the layer descriptor's size
	layout        string        // oci-layout content
}

func ociArchive(tb testing.TB, spec ociSpec) []byte {
	tb.Helper()
	if spec.layer == nil {
		spec.layer = makeTar(tb, []tarEntry{{name: "app/", typ: tar.TypeDir}, {name: "app/x", body: []byte("x")}})
	}
	if spec.annotations == nil {
		spec.annotations = map[string]string{AnnotationImageName: "docker.io/library/test:1"}
	}
	if spec.layout == "" {
		spec.layout = `{"imageLayoutVersion":"1.0.0"}`
	}
	blob := spec.layer
	mt := ocispec.MediaTypeImageLayer
	switch spec.layerEncoding {
	case "gzip":
		blob, mt = gzipBytes(tb, blob), ocispec.MediaTypeImageLayerGzip
	case "zstd":
		blob, mt = zstdBytes(tb, blob), ocispec.MediaTypeImageLayerZstd
	}
	if spec.layerType != "" {
		mt = spec.layerType
	}
	diffID := digest.FromBytes(spec.layer)
	if spec.diffID != "" {
		diffID = spec.diffID
	}
	cfg := mustJSON(tb, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	mtype := ocispec.MediaTypeImageManifest
	if spec.manifestType != "" {
		mtype = spec.manifestType
	}
	manifest := mustJSON(tb, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{{MediaType: mt, Digest: digest.FromBytes(blob), Size: int64(len(blob)) + spec.sizeDelta}},
	})
	index := mustJSON(tb, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		Manifests: []ocispec.Descriptor{{
			MediaType: mtype, Digest: digest.FromBytes(manifest), Size: int64(len(manifest)),
			Annotations: spec.annotations,
		}},
	})
	return makeTar(tb, []tarEntry{
		{name: "oci-layout", body: []byte(spec.layout)},
		{name: "blobs/", typ: tar.TypeDir},
		{name: "blobs/sha256/", typ: tar.TypeDir},
		{name: blobPath(digest.FromBytes(blob)), body: blob},
		{name: blobPath(digest.FromBytes(cfg)), body: cfg},
		{name: blobPath(digest.FromBytes(manifest)), body: manifest},
		{name: "index.json", body: index},
	})
}

// dockerSpec describes a `docker save` archive for dockerArchive.
type dockerSpec struct {
	layers   [][]byte // layer files as stored; default one small tar
	repoTags []string // default ["test:1"]; use []string{} for none
	manifest string   // override manifest.json
}

func dockerArchive(tb testing.TB, spec dockerSpec) []byte {
	tb.Helper()
	if spec.layers == nil {
		spec.layers = [][]byte{makeTar(tb, []tarEntry{{name: "bin/", typ: tar.TypeDir}, {name: "bin/app", body: []byte("app")}})}
	}
	if spec.repoTags == nil {
		spec.repoTags = []string{"test:1"}
	}
	var entries []tarEntry
	var layerPaths []string
	var diffIDs []digest.Digest
	for i, l := range spec.layers {
		p := fmt.Sprintf("layer%d/layer.tar", i)
		entries = append(entries, tarEntry{name: fmt.Sprintf("layer%d/", i), typ: tar.TypeDir}, tarEntry{name: p, body: l})
		layerPaths = append(layerPaths, p)
		diffIDs = append(diffIDs, digest.FromBytes(gunzipIfGzip(tb, l)))
	}
	cfg := mustJSON(tb, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	cfgName := digest.FromBytes(cfg).Encoded() + ".json"
	entries = append(entries, tarEntry{name: cfgName, body: cfg})
	manifest := spec.manifest
	if manifest == "" {
		manifest = string(mustJSON(tb, []dockerManifest{{Config: cfgName, RepoTags: spec.repoTags, Layers: layerPaths}}))
	}
	entries = append(entries, tarEntry{name: "manifest.json", body: []byte(manifest)})
	return makeTar(tb, entries)
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mutate rewrites the entries of an archive.
func mutate(tb testing.TB, archive []byte, fn func([]tarEntry) []tarEntry) []byte {
	tb.Helper()
	return makeTar(tb, fn(readTar(tb, archive)))
}

func gunzipIfGzip(tb testing.TB, b []byte) []byte {
	tb.Helper()
	if !bytes.HasPrefix(b, gzipMagic) {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
