package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the mtime of every entry Build writes, so the same inputs give
// byte-identical archives and the same digest on every push.
var epoch = time.Unix(0, 0)

// DefaultPath is the PATH of images Build makes.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is an extra regular file Build puts in the image.
type File struct {
	// Path is absolute inside the image, such as "/etc/app.yaml".
	Path string
	// Mode is the permission bits; 0 means 0644.
	Mode fs.FileMode
	Data []byte
}

// BuildOptions describes a single-layer image around a static binary.
type BuildOptions struct {
	// Name is the image reference, such as "hello" or "hello:v2". It is
	// normalized (docker.io/library/hello:latest) and written as
	// containerd's image name annotation. Required.
	Name string
	// Binary is the content of the static executable. Required.
	Binary []byte
	// BinaryPath is where the binary lands in the image. Default "/app/main"
	// (BuildFromBinary uses "/app/<file name>").
	BinaryPath string
	// Entrypoint defaults to [BinaryPath].
	Entrypoint []string
	// Cmd is the default arguments.
	Cmd []string
	// Env is added after DefaultPath, as "KEY=value".
	Env []string
	// ExposedPorts are TCP ports, documented in the config.
	ExposedPorts []int
	// User is "uid[:gid]" or a name from the image's /etc/passwd ("nobody").
	// Default "" runs as root.
	User string
	// WorkingDir defaults to "/".
	WorkingDir string
	// Labels go into the image config.
	Labels map[string]string
	// Files are extra files, for example static assets.
	Files []File
	// Architecture defaults to runtime.GOARCH. The OS is always linux.
	Architecture string
}

// Files a static Go server expects: user and group lookups, the resolver's
// nsswitch order, and mount targets for the runtime's hosts and resolv.conf.
var baseFiles = []File{
	{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
	{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n")},
	{Path: "/etc/hosts", Data: []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n")},
	{Path: "/etc/resolv.conf", Data: []byte{}},
}

// BuildFromBinary is Build with the binary read from binaryPath. Unless set,
// opts.BinaryPath becomes /app/<base name of binaryPath>.
func BuildFromBinary(w io.Writer, binaryPath string, opts BuildOptions) (digest.Digest, error) {
	b, err := os.ReadFile(binaryPath)
	if err != nil {
		return "", fmt.Errorf("read binary: %w", err)
	}
	opts.Binary = b
	if opts.BinaryPath == "" {
		opts.BinaryPath = "/app/" + filepath.Base(binaryPath)
	}
	return Build(w, opts)
}

// Build writes an OCI image layout tar (oci-layout, index.json, blobs) with
// one gzip layer holding the binary, /tmp and the minimal /etc files, and
// returns the manifest digest. The output depends only on opts.
func Build(w io.Writer, opts BuildOptions) (digest.Digest, error) {
	if opts.Name == "" {
		return "", errors.New("build image: a name is required")
	}
	named, err := reference.ParseDockerRef(opts.Name)
	if err != nil {
		return "", fmt.Errorf("build image: invalid name %q: %w", opts.Name, err)
	}
	if len(opts.Binary) == 0 {
		return "", errors.New("build image: the binary is empty")
	}
	if opts.BinaryPath == "" {
		opts.BinaryPath = "/app/main"
	}
	if opts.Architecture == "" {
		opts.Architecture = runtime.GOARCH
	}
	if len(opts.Entrypoint) == 0 {
		opts.Entrypoint = []string{opts.BinaryPath}
	}
	if opts.WorkingDir == "" {
		opts.WorkingDir = "/"
	}

	files := append([]File(nil), baseFiles...)
	files = append(files, File{Path: opts.BinaryPath, Mode: 0o755, Data: opts.Binary})
	files = append(files, opts.Files...)
	layer, diffID, err := buildLayer(files)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}

	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: opts.Architecture, OS: "linux"},
		Config: ocispec.ImageConfig{
			User:       opts.User,
			Env:        append([]string{DefaultPath}, opts.Env...),
			Entrypoint: opts.Entrypoint,
			Cmd:        opts.Cmd,
			WorkingDir: opts.WorkingDir,
			Labels:     opts.Labels,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	if len(opts.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range opts.ExposedPorts {
			if p <= 0 || p > 65535 {
				return "", fmt.Errorf("build image: invalid port %d", p)
			}
			cfg.Config.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
		}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgJSON), Size: int64(len(cfgJSON))}

	manifestJSON, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return "", err
	}
	manifestDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestJSON),
		Size:      int64(len(manifestJSON)),
	}
	indexDesc := manifestDesc
	indexDesc.Platform = &ocispec.Platform{Architecture: opts.Architecture, OS: "linux"}
	indexDesc.Annotations = map[string]string{
		AnnotationImageName:       named.String(),
		ocispec.AnnotationRefName: refNameTag(named),
	}
	indexJSON, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{indexDesc},
	})
	if err != nil {
		return "", err
	}
	layoutJSON, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutJSON},
		{"blobs/", nil},
		{"blobs/sha256/", nil},
		{blobPath(layerDesc.Digest), layer},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(manifestDesc.Digest), manifestJSON},
		{ocispec.ImageIndexFile, indexJSON},
	}
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch, Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("write image archive: %w", err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return "", fmt.Errorf("write image archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("write image archive: %w", err)
	}
	return manifestDesc.Digest, nil
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// buildLayer returns the gzip-compressed layer tar and its diff ID (the
// digest of the uncompressed tar), with every parent directory, /tmp
// world-writable and sticky, root ownership and fixed mtimes.
func buildLayer(files []File) ([]byte, digest.Digest, error) {
	type node struct {
		dir  bool
		mode int64
		data []byte
	}
	nodes := map[string]node{"tmp": {dir: true, mode: 0o1777}}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(f.Path) || p == "/" || p != f.Path {
			return nil, "", fmt.Errorf("image file path %q must be absolute and clean", f.Path)
		}
		p = strings.TrimPrefix(p, "/")
		if n, ok := nodes[p]; ok && n.dir {
			return nil, "", fmt.Errorf("image file %q collides with a directory", f.Path)
		}
		mode := int64(f.Mode.Perm())
		if mode == 0 {
			mode = 0o644
		}
		nodes[p] = node{mode: mode, data: f.Data}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if n, ok := nodes[d]; ok && !n.dir {
				return nil, "", fmt.Errorf("image file %q is under file %q", f.Path, "/"+d)
			}
			if _, ok := nodes[d]; !ok {
				nodes[d] = node{dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	// A parent is a prefix of its children, so it sorts before them.
	sort.Strings(names)

	// klauspost's gzip at BestSpeed compresses a Go binary about five times
	// faster than compress/gzip's default for ~10% more bytes; pushes go over
	// loopback or a LAN, so time matters more. Its output is deterministic
	// for a given version, which go.mod pins.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, "", err
	}
	diff := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, diff))
	for _, name := range names {
		n := nodes[name]
		hdr := &tar.Header{Name: name, Mode: n.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(n.data))}
		if n.dir {
			hdr.Name, hdr.Typeflag, hdr.Size = name+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(n.data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.NewDigest(digest.SHA256, diff), nil
}
