package ociimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of docker's distribution format, which OCI layouts written by
// docker and containerd still use. (containerd's images package has them, but
// this package stays free of containerd.)
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeign      = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	mediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	// Buildx adds provenance manifests whose "layers" are in-toto JSON.
	annotationReferenceType = "vnd.docker.reference.type"
	referenceAttestation    = "attestation-manifest"
)

// maxIndexDepth bounds nested image indexes.
const maxIndexDepth = 4

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

const noNameMsg = "the archive does not name its image: tag the image before saving it " +
	"(docker save NAME:TAG), or give its index.json entry an io.containerd.image.name annotation " +
	"(or a full reference as org.opencontainers.image.ref.name)"

// Spool copies an uploaded image archive (an OCI image layout tar or a
// `docker save` tar, either optionally gzip-compressed) to a new temp file in
// dir while validating it, bounded by limits. On success the file holds the
// uncompressed tar and the caller must Remove the Archive when done. On any
// error nothing is left in dir. A refused archive yields an *ArchiveError
// (wrapping ErrTooLarge for a broken limit); other errors are I/O failures.
//
// Spool bounds one upload only; a server that takes several at once spools
// them through a SpoolDir, which bounds them together.
func Spool(r io.Reader, dir string, limits Limits) (*Archive, error) {
	return spoolFile(r, dir, limits, nil)
}

// spoolFile is Spool, taking each spooled byte from reserve first when
// reserve is not nil.
func spoolFile(r io.Reader, dir string, limits Limits, reserve func(int64) error) (*Archive, error) {
	limits = limits.WithDefaults()
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return nil, fmt.Errorf("spool image archive: %w", err)
	}
	a, err := spoolTo(r, f, limits, reserve)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool image archive: %w", cerr)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, err
	}
	a.Path = f.Name()
	return a, nil
}

// spoolTarget is where the uncompressed archive is copied, then read back
// from for the structural checks: a temp file, or memory in the fuzz test.
type spoolTarget interface {
	io.Writer
	io.ReaderAt
}

// spoolTo is Spool without the file handling.
func spoolTo(r io.Reader, w spoolTarget, limits Limits, reserve func(int64) error) (*Archive, error) {
	s := &spooler{lim: limits, f: w, entries: map[string]*entry{}, reserve: reserve}
	return s.run(r)
}

// entry is one entry of the outer tar, located in the spooled file.
type entry struct {
	name   string
	dir    bool
	offset int64
	size   int64
}

type spooler struct {
	lim     Limits
	f       spoolTarget
	reserve func(int64) error // nil: no budget beyond lim
	entries map[string]*entry
	size    int64 // bytes spooled

	unpacked     int64                           // decompressed layer bytes so far
	layerEntries int                             // layer tar entries so far
	layers       map[digest.Digest]digest.Digest // layer blob -> diff ID, checked once
	visited      map[digest.Digest]bool          // manifests and indexes walked
}

func (s *spooler) run(r io.Reader) (*Archive, error) {
	if err := s.copyAndScan(r); err != nil {
		return nil, err
	}
	a := &Archive{Size: s.size}
	var err error
	switch {
	case s.entries[ocispec.ImageLayoutFile] != nil:
		a.Format = FormatOCI
		a.Images, err = s.checkOCI()
	case s.entries["manifest.json"] != nil:
		a.Format = FormatDocker
		a.Images, err = s.checkDocker()
	default:
		err = archiveErr("", "neither an OCI image layout (no oci-layout file) nor a docker save archive (no manifest.json)")
	}
	if err != nil {
		return nil, err
	}
	a.UnpackedSize = s.unpacked
	return a, nil
}

// Errors from the readers below carry their origin, so that Spool can tell
// a bad archive (the uploader's fault) from a broken disk or connection.
type uploadReadError struct{ err error }

func (e *uploadReadError) Error() string { return e.err.Error() }
func (e *uploadReadError) Unwrap() error { return e.err }

type spoolWriteError struct{ err error }

func (e *spoolWriteError) Error() string { return e.err.Error() }
func (e *spoolWriteError) Unwrap() error { return e.err }

// uploadReader bounds the raw upload.
type uploadReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (u *uploadReader) Read(p []byte) (int, error) {
	// Read at most one byte past the limit: enough to know it was broken.
	if rem := u.max - u.n; rem < int64(len(p)) {
		p = p[:rem+1]
	}
	n, err := u.r.Read(p)
	u.n += int64(n)
	if u.n > u.max {
		return 0, tooLarge("", "the upload is larger than the limit of %d bytes", u.max)
	}
	if err != nil && err != io.EOF {
		err = &uploadReadError{err}
	}
	return n, err
}

// spoolReader bounds the decompressed archive, copies it to the spool file
// and counts the offset the tar reader has reached. Every check runs before
// the bytes are written, so a refused archive never spools more than the
// limit it broke.
type spoolReader struct {
	r        io.Reader
	w        io.Writer
	n        int64
	max      int64
	in       *uploadReader // the bytes received, for the ratio check
	ratio    int64
	ratioMin int64
	reserve  func(int64) error
}

func (s *spoolReader) Read(p []byte) (int, error) {
	if rem := s.max - s.n; rem < int64(len(p)) {
		p = p[:rem+1]
	}
	n, err := s.r.Read(p)
	total := s.n + int64(n)
	if total > s.max {
		return 0, tooLarge("", "the archive decompresses to more than the limit of %d bytes", s.max)
	}
	// In float64: ratio × received can overflow int64 for huge limits.
	if total > s.ratioMin && float64(total) > float64(s.ratio)*float64(s.in.n) {
		return 0, tooLarge("", "the archive decompresses to more than %d times the %d bytes received (a compression bomb?); "+
			"send it uncompressed or with a lower compression ratio", s.ratio, s.in.n)
	}
	if n > 0 {
		if s.reserve != nil {
			if rerr := s.reserve(int64(n)); rerr != nil {
				var ae *ArchiveError
				if errors.As(rerr, &ae) {
					return 0, ae
				}
				return 0, &spoolWriteError{rerr}
			}
		}
		if _, werr := s.w.Write(p[:n]); werr != nil {
			return 0, &spoolWriteError{werr}
		}
	}
	s.n = total
	return n, err
}

// classify turns a reader error into what Spool returns.
func classify(err error, entry string) error {
	var ae *ArchiveError
	var ue *uploadReadError
	var we *spoolWriteError
	var ce flate.CorruptInputError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ue):
		return fmt.Errorf("read image upload: %w", ue.err)
	case errors.As(err, &we):
		return fmt.Errorf("spool image archive: %w", we.err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &ArchiveError{Entry: entry, Msg: "the archive is truncated"}
	case errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.As(err, &ce):
		return &ArchiveError{Entry: entry, Msg: "corrupt gzip stream", Err: err}
	default:
		return &ArchiveError{Entry: entry, Msg: "not a valid tar archive", Err: err}
	}
}

// copyAndScan streams the upload into the spool file, checking every entry
// of the outer tar and the digest of every blob, and records where each
// entry's data lies.
func (s *spooler) copyAndScan(r io.Reader) error {
	in := &uploadReader{r: r, max: s.lim.MaxCompressedSize}
	br := bufio.NewReaderSize(in, 32<<10)
	magic, err := br.Peek(len(gzipMagic))
	if len(magic) == 0 && errors.Is(err, io.EOF) {
		return archiveErr("", "the archive is empty")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return classify(err, "")
	}
	var src io.Reader = br
	if bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return classify(err, "")
		}
		defer zr.Close()
		src = zr
	}
	sr := &spoolReader{r: src, w: s.f, max: s.lim.MaxSize, in: in, ratio: s.lim.MaxRatio, ratioMin: s.lim.RatioMinSize, reserve: s.reserve}
	tr := tar.NewReader(sr)
	var (
		count   int
		lastEnd int64 // end of the last entry's data, padded to a block
		last    string
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if count == 0 && errors.Is(err, tar.ErrHeader) {
				return archiveErr("", "not a tar archive")
			}
			if errors.Is(err, tar.ErrHeader) {
				return &ArchiveError{Msg: fmt.Sprintf("corrupt tar header after entry %q", last), Err: err}
			}
			return classify(err, last)
		}
		count++
		if count > s.lim.MaxEntries {
			return tooLarge("", "the archive has more than the limit of %d entries", s.lim.MaxEntries)
		}
		e, err := s.checkHeader(hdr)
		if err != nil {
			return err
		}
		if e == nil {
			continue
		}
		last = e.name
		e.offset = sr.n
		if err := s.readData(tr, e); err != nil {
			return err
		}
		lastEnd = e.offset + (e.size+511)&^511
	}
	if count == 0 {
		return archiveErr("", "the archive has no entries")
	}
	// archive/tar takes a clean EOF between entries as the end; a real
	// archive ends with zero blocks, so their absence means truncation.
	if sr.n-lastEnd < 512 {
		return archiveErr("", "the archive is truncated (no end-of-archive marker)")
	}
	// Read to the end so a gzip stream's checksum is verified too.
	if _, err := io.Copy(io.Discard, sr); err != nil {
		return classify(err, "")
	}
	s.size = sr.n
	return nil
}

// checkHeader validates one outer entry and records it. It returns nil for
// entries that carry nothing (PAX global headers, the "." directory).
func (s *spooler) checkHeader(hdr *tar.Header) (*entry, error) {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil, nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir: //nolint:staticcheck // TypeRegA still occurs in old tars
	case tar.TypeSymlink, tar.TypeLink:
		return nil, archiveErr(hdr.Name, "links are not allowed in an image archive")
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return nil, archiveErr(hdr.Name, "device and fifo entries are not allowed in an image archive")
	default:
		return nil, archiveErr(hdr.Name, "unsupported tar entry type %q", string(hdr.Typeflag))
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, archiveErr(hdr.Name, "sparse files are not allowed in an image archive")
		}
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return nil, err
	}
	dir := hdr.Typeflag == tar.TypeDir
	if name == "." {
		if !dir {
			return nil, archiveErr(hdr.Name, "invalid entry name")
		}
		return nil, nil
	}
	if _, dup := s.entries[name]; dup {
		return nil, archiveErr(hdr.Name, "duplicate entry")
	}
	if hdr.Size > s.lim.MaxEntrySize {
		return nil, tooLarge(hdr.Name, "the entry is larger than the limit of %d bytes", s.lim.MaxEntrySize)
	}
	e := &entry{name: name, dir: dir}
	if !dir {
		e.size = hdr.Size
		if strings.HasPrefix(name, ocispec.ImageBlobsDir+"/") {
			if _, err := blobDigest(name); err != nil {
				return nil, err
			}
		}
	}
	s.entries[name] = e
	return e, nil
}

// cleanName refuses absolute names and any ".." component, then cleans
// the name the way containerd's importer keys entries.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", archiveErr(name, "empty entry name")
	}
	if strings.HasPrefix(name, "/") {
		return "", archiveErr(name, "absolute paths are not allowed")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", archiveErr(name, "path traversal (\"..\") is not allowed")
		}
	}
	return path.Clean(name), nil
}

// blobDigest parses blobs/sha256/<hex>.
func blobDigest(name string) (digest.Digest, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || parts[0] != ocispec.ImageBlobsDir {
		return "", archiveErr(name, "unexpected file in blobs/")
	}
	if parts[1] != string(digest.SHA256) {
		return "", archiveErr(name, "unsupported digest algorithm %q (only sha256)", parts[1])
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, parts[2])
	if err := d.Validate(); err != nil || strings.ToLower(parts[2]) != parts[2] {
		return "", archiveErr(name, "blob name is not a sha256 digest")
	}
	return d, nil
}

// readData consumes an entry's data, verifying a blob's digest on the way.
func (s *spooler) readData(tr *tar.Reader, e *entry) error {
	if e.dir {
		return nil
	}
	var want digest.Digest
	if strings.HasPrefix(e.name, ocispec.ImageBlobsDir+"/") {
		want, _ = blobDigest(e.name)
	}
	h := sha256.New()
	var w io.Writer = io.Discard
	if want != "" {
		w = h
	}
	if _, err := io.Copy(w, tr); err != nil {
		return classify(err, e.name)
	}
	if want != "" && hex.EncodeToString(h.Sum(nil)) != want.Encoded() {
		return archiveErr(e.name, "blob content does not match its sha256 name")
	}
	return nil
}

// file returns a regular-file entry by name.
func (s *spooler) file(name, referrer string) (*entry, error) {
	e := s.entries[name]
	if e == nil {
		return nil, archiveErr(referrer, "refers to %q, which is not in the archive", name)
	}
	if e.dir {
		return nil, archiveErr(name, "is a directory, not a file")
	}
	return e, nil
}

func (s *spooler) reader(e *entry) *io.SectionReader {
	return io.NewSectionReader(s.f, e.offset, e.size)
}

func (s *spooler) readJSON(e *entry, v any) error {
	if e.size > maxJSONSize {
		return tooLarge(e.name, "JSON document larger than %d bytes", maxJSONSize)
	}
	b := make([]byte, e.size)
	if _, err := io.ReadFull(s.reader(e), b); err != nil {
		return fmt.Errorf("read spooled %s: %w", e.name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &ArchiveError{Entry: e.name, Msg: "invalid JSON", Err: err}
	}
	return nil
}

// blob returns the entry a descriptor points at, checking digest and size.
func (s *spooler) blob(d ocispec.Descriptor, referrer string) (*entry, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, &ArchiveError{Entry: referrer, Msg: fmt.Sprintf("invalid digest %q", d.Digest), Err: err}
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return nil, archiveErr(referrer, "unsupported digest algorithm in %q (only sha256)", d.Digest)
	}
	e, err := s.file(blobPath(d.Digest), referrer)
	if err != nil {
		return nil, err
	}
	if e.size != d.Size {
		return nil, archiveErr(referrer, "descriptor of %s says %d bytes, the blob has %d", d.Digest, d.Size, e.size)
	}
	return e, nil
}

func (s *spooler) checkOCI() ([]Image, error) {
	le, err := s.file(ocispec.ImageLayoutFile, "")
	if err != nil {
		return nil, err
	}
	var layout ocispec.ImageLayout
	if err := s.readJSON(le, &layout); err != nil {
		return nil, err
	}
	if layout.Version != ocispec.ImageLayoutVersion {
		return nil, archiveErr(le.name, "unsupported image layout version %q (want %q)", layout.Version, ocispec.ImageLayoutVersion)
	}
	ie := s.entries[ocispec.ImageIndexFile]
	if ie == nil {
		return nil, archiveErr("", "OCI image layout without index.json")
	}
	if ie.dir {
		return nil, archiveErr(ie.name, "is a directory, not a file")
	}
	var idx ocispec.Index
	if err := s.readJSON(ie, &idx); err != nil {
		return nil, err
	}
	if idx.SchemaVersion != 2 {
		return nil, archiveErr(ie.name, "unsupported schemaVersion %d", idx.SchemaVersion)
	}
	if len(idx.Manifests) == 0 {
		return nil, archiveErr(ie.name, "lists no images")
	}
	s.visited = map[digest.Digest]bool{}
	s.layers = map[digest.Digest]digest.Digest{}
	var imgs []Image
	byName := map[string]digest.Digest{}
	for _, d := range idx.Manifests {
		if err := s.walk(d, 0, ie.name); err != nil {
			return nil, err
		}
		name, err := ImageName(d.Annotations)
		if err != nil {
			return nil, &ArchiveError{Entry: ie.name, Msg: "bad image name annotation", Err: err}
		}
		if name == "" {
			continue
		}
		if prev, ok := byName[name]; ok {
			if prev != d.Digest {
				return nil, archiveErr(ie.name, "names two different images %q", name)
			}
			continue
		}
		byName[name] = d.Digest
		imgs = append(imgs, Image{Name: name, Digest: d.Digest})
	}
	if len(imgs) == 0 {
		return nil, archiveErr("", noNameMsg)
	}
	return imgs, nil
}

// walk checks an index or manifest and everything below it.
func (s *spooler) walk(d ocispec.Descriptor, depth int, referrer string) error {
	e, err := s.blob(d, referrer)
	if err != nil {
		return err
	}
	if s.visited[d.Digest] {
		return nil
	}
	s.visited[d.Digest] = true
	switch d.MediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		if depth >= maxIndexDepth {
			return archiveErr(e.name, "image indexes nested more than %d deep", maxIndexDepth)
		}
		var idx ocispec.Index
		if err := s.readJSON(e, &idx); err != nil {
			return err
		}
		if idx.SchemaVersion != 2 {
			return archiveErr(e.name, "unsupported schemaVersion %d", idx.SchemaVersion)
		}
		for _, c := range idx.Manifests {
			if err := s.walk(c, depth+1, e.name); err != nil {
				return err
			}
		}
		return nil
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		return s.checkManifest(d, e)
	default:
		return archiveErr(referrer, "unsupported media type %q for %s", d.MediaType, d.Digest)
	}
}

func (s *spooler) checkManifest(d ocispec.Descriptor, e *entry) error {
	var m ocispec.Manifest
	if err := s.readJSON(e, &m); err != nil {
		return err
	}
	if m.SchemaVersion != 2 {
		return archiveErr(e.name, "unsupported manifest schemaVersion %d", m.SchemaVersion)
	}
	ce, err := s.blob(m.Config, e.name)
	if err != nil {
		return err
	}
	if d.Annotations[annotationReferenceType] == referenceAttestation {
		// Provenance, not a runnable image: its blobs must be present, but
		// its "layers" are JSON documents, never unpacked.
		for _, l := range m.Layers {
			if _, err := s.blob(l, e.name); err != nil {
				return err
			}
		}
		return nil
	}
	if m.Config.MediaType != ocispec.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig {
		return archiveErr(e.name, "unsupported config media type %q", m.Config.MediaType)
	}
	diffIDs, err := s.diffIDs(ce, len(m.Layers))
	if err != nil {
		return err
	}
	for i, l := range m.Layers {
		le, err := s.blob(l, e.name)
		if err != nil {
			return err
		}
		switch l.MediaType {
		case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
			mediaTypeDockerLayer, mediaTypeDockerLayerGzip:
		case ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // recognised to refuse them clearly
			ocispec.MediaTypeImageLayerNonDistributableZstd, mediaTypeDockerForeign, mediaTypeDockerForeignGzip: //nolint:staticcheck
			return archiveErr(e.name, "foreign (non-distributable) layers are not supported")
		default:
			return archiveErr(e.name, "unsupported layer media type %q", l.MediaType)
		}
		if err := s.checkLayerOnce(l.Digest, le, diffIDs[i]); err != nil {
			return err
		}
	}
	return nil
}

// diffIDs reads an image config and returns its rootfs diff IDs, which
// must match the layers one to one (containerd's unpack requires it).
func (s *spooler) diffIDs(ce *entry, layers int) ([]digest.Digest, error) {
	var cfg ocispec.Image
	if err := s.readJSON(ce, &cfg); err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != layers {
		return nil, archiveErr(ce.name, "config lists %d layer diff IDs for %d layers", len(cfg.RootFS.DiffIDs), layers)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, &ArchiveError{Entry: ce.name, Msg: fmt.Sprintf("invalid diff ID %q", d), Err: err}
		}
	}
	return cfg.RootFS.DiffIDs, nil
}

func (s *spooler) checkLayerOnce(key digest.Digest, e *entry, wantDiffID digest.Digest) error {
	got, ok := s.layers[key]
	if !ok {
		var err error
		if got, err = s.checkLayer(e); err != nil {
			return err
		}
		s.layers[key] = got
	}
	if got != wantDiffID {
		return archiveErr(e.name, "layer content (diff ID %s) does not match the config's %s", got, wantDiffID)
	}
	return nil
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *spooler) checkDocker() ([]Image, error) {
	me, err := s.file("manifest.json", "")
	if err != nil {
		return nil, err
	}
	var mfsts []dockerManifest
	if err := s.readJSON(me, &mfsts); err != nil {
		return nil, err
	}
	if len(mfsts) == 0 {
		return nil, archiveErr(me.name, "lists no images")
	}
	s.layers = map[digest.Digest]digest.Digest{}
	var imgs []Image
	seen := map[string]bool{}
	for _, m := range mfsts {
		ce, err := s.dockerFile(m.Config, me.name)
		if err != nil {
			return nil, err
		}
		diffIDs, err := s.diffIDs(ce, len(m.Layers))
		if err != nil {
			return nil, err
		}
		for i, l := range m.Layers {
			le, err := s.dockerFile(l, me.name)
			if err != nil {
				return nil, err
			}
			// Keyed by name: docker save layers are not content addressed.
			if err := s.checkLayerOnce(digest.Digest("file:"+le.name), le, diffIDs[i]); err != nil {
				return nil, err
			}
		}
		for _, tag := range m.RepoTags {
			name, err := NormalizeName(tag)
			if err != nil {
				return nil, &ArchiveError{Entry: me.name, Msg: "bad RepoTags entry", Err: err}
			}
			if seen[name] {
				return nil, archiveErr(me.name, "names two images %q", name)
			}
			seen[name] = true
			imgs = append(imgs, Image{Name: name})
		}
	}
	if len(imgs) == 0 {
		return nil, archiveErr("", noNameMsg)
	}
	return imgs, nil
}

// dockerFile resolves a path from manifest.json. containerd's importer
// looks these up verbatim among cleaned entry names, so they must be clean.
func (s *spooler) dockerFile(name, referrer string) (*entry, error) {
	clean, err := cleanName(name)
	if err != nil {
		return nil, &ArchiveError{Entry: referrer, Msg: fmt.Sprintf("bad path %q", name), Err: err}
	}
	if clean != name {
		return nil, archiveErr(referrer, "path %q is not clean", name)
	}
	return s.file(name, referrer)
}

// unpackCounter bounds the decompressed bytes of all layers together.
type unpackCounter struct {
	r io.Reader
	s *spooler
}

func (u *unpackCounter) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.s.unpacked += int64(n)
	if u.s.unpacked > u.s.lim.MaxUnpackedSize {
		return 0, tooLarge("", "the layers decompress to more than the limit of %d bytes", u.s.lim.MaxUnpackedSize)
	}
	return n, err
}

// checkLayer reads a layer (plain, gzip or zstd tar, detected by content as
// containerd does) and checks each file name, returning its diff ID.
// Symlinks are ordinary rootfs content and are allowed; names that climb
// out of the root and device nodes are not.
func (s *spooler) checkLayer(e *entry) (digest.Digest, error) {
	br := bufio.NewReader(s.reader(e))
	magic, _ := br.Peek(len(zstdMagic))
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", &ArchiveError{Entry: e.name, Msg: "layer is not a valid gzip stream", Err: err}
		}
		defer zr.Close()
		r = zr
	case bytes.Equal(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return "", &ArchiveError{Entry: e.name, Msg: "layer is not a valid zstd stream", Err: err}
		}
		defer zr.Close()
		r = zr
	}
	h := sha256.New()
	data := io.TeeReader(&unpackCounter{r: r, s: s}, h)
	tr := tar.NewReader(data)
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ae *ArchiveError
			if errors.As(err, &ae) {
				return "", ae
			}
			if first {
				return "", &ArchiveError{Entry: e.name, Msg: "layer is not a tar archive", Err: err}
			}
			return "", &ArchiveError{Entry: e.name, Msg: "layer tar is corrupt or truncated", Err: err}
		}
		s.layerEntries++
		if s.layerEntries > s.lim.MaxLayerEntries {
			return "", tooLarge(e.name, "the layers hold more than the limit of %d files", s.lim.MaxLayerEntries)
		}
		if err := checkLayerHeader(hdr); err != nil {
			err.Entry, err.Msg = e.name, fmt.Sprintf("layer file %q: %s", hdr.Name, err.Msg)
			return "", err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			var ae *ArchiveError
			if errors.As(err, &ae) {
				return "", ae
			}
			return "", &ArchiveError{Entry: e.name, Msg: fmt.Sprintf("layer file %q is truncated or corrupt", hdr.Name), Err: err}
		}
	}
	// The diff ID covers the whole decompressed stream, padding included.
	if _, err := io.Copy(io.Discard, data); err != nil {
		var ae *ArchiveError
		if errors.As(err, &ae) {
			return "", ae
		}
		return "", &ArchiveError{Entry: e.name, Msg: "layer stream is truncated or corrupt", Err: err}
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func checkLayerHeader(hdr *tar.Header) *ArchiveError {
	if err := checkRootfsPath(hdr.Name); err != "" {
		return &ArchiveError{Msg: err}
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return &ArchiveError{Msg: "device nodes are not allowed in a function image"}
	case tar.TypeLink:
		if err := checkRootfsPath(hdr.Linkname); err != "" {
			return &ArchiveError{Msg: "hard link target: " + err}
		}
	}
	return nil
}

func checkRootfsPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return "absolute paths are not allowed"
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "path traversal (\"..\") is not allowed"
		}
	}
	return ""
}
