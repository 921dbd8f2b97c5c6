package ociimage

import (
	"errors"
	"fmt"
	"os"

	digest "github.com/opencontainers/go-digest"
)

// Format is the kind of image archive.
type Format string

// Archive formats Spool accepts.
const (
	FormatOCI    Format = "oci"    // OCI image layout: oci-layout, index.json, blobs/sha256/...
	FormatDocker Format = "docker" // `docker save`: manifest.json, configs and layer tars
)

// Limits bound what Spool accepts. Zero fields take the defaults.
type Limits struct {
	// MaxCompressedSize bounds the upload as received. Default 1 GiB.
	MaxCompressedSize int64
	// MaxSize bounds the archive after gzip decompression; it is also the
	// largest spooled file. Default 2 GiB.
	MaxSize int64
	// MaxRatio bounds how many times larger than the bytes received so far
	// the decompressed archive may grow, once it is past RatioMinSize. Gzip
	// reaches about 1000:1 on zeros, real image archives 2:1 to 10:1, so a
	// whole-upload gzip bomb is refused after RatioMinSize bytes reached the
	// spool rather than after MaxSize. Default 100.
	MaxRatio int64
	// RatioMinSize is the decompressed size up to which MaxRatio is not
	// checked, so that small, very compressible archives pass. Default 32 MiB.
	RatioMinSize int64
	// MaxEntries bounds the entries of the archive. Default 10000.
	MaxEntries int
	// MaxEntrySize bounds one entry (one blob). Default 1 GiB.
	MaxEntrySize int64
	// MaxUnpackedSize bounds the decompressed size of all layers together,
	// which is what unpacking would write to disk. Default 4 GiB.
	MaxUnpackedSize int64
	// MaxLayerEntries bounds the files in all layers together. Default 500000.
	MaxLayerEntries int
}

// Default limits.
const (
	DefaultMaxCompressedSize = 1 << 30
	DefaultMaxSize           = 2 << 30
	DefaultMaxRatio          = 100
	DefaultRatioMinSize      = 32 << 20
	DefaultMaxEntries        = 10000
	DefaultMaxEntrySize      = 1 << 30
	DefaultMaxUnpackedSize   = 4 << 30
	DefaultMaxLayerEntries   = 500000
)

// maxJSONSize bounds every JSON document read from an archive (oci-layout,
// index.json, manifests, configs), which are parsed in memory.
const maxJSONSize = 4 << 20

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxCompressedSize == 0 {
		l.MaxCompressedSize = DefaultMaxCompressedSize
	}
	if l.MaxSize == 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxRatio == 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.RatioMinSize == 0 {
		l.RatioMinSize = DefaultRatioMinSize
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxEntrySize == 0 {
		l.MaxEntrySize = DefaultMaxEntrySize
	}
	if l.MaxUnpackedSize == 0 {
		l.MaxUnpackedSize = DefaultMaxUnpackedSize
	}
	if l.MaxLayerEntries == 0 {
		l.MaxLayerEntries = DefaultMaxLayerEntries
	}
	return l
}

// Validate reports a negative limit.
func (l Limits) Validate() error {
	if l.MaxCompressedSize < 0 || l.MaxSize < 0 || l.MaxRatio < 0 || l.RatioMinSize < 0 || l.MaxEntries < 0 ||
		l.MaxEntrySize < 0 || l.MaxUnpackedSize < 0 || l.MaxLayerEntries < 0 {
		return errors.New("archive limits must not be negative")
	}
	return nil
}

// ErrTooLarge is wrapped by an *ArchiveError that broke a Limit, so callers
// can answer 413 rather than 400.
var ErrTooLarge = errors.New("archive exceeds a size limit")

// ErrSpoolFull is wrapped by the error of an upload refused because the
// uploads in progress already hold what a SpoolDir allows. It is not an
// *ArchiveError: the archive may be fine, and the same upload may succeed
// once the others finish.
var ErrSpoolFull = errors.New("the image spool is full")

// ArchiveError says why an uploaded archive was refused. Its message is
// meant for the person who uploaded it.
type ArchiveError struct {
	// Entry is the archive entry at fault, if there is one.
	Entry string
	// Msg says what is wrong.
	Msg string
	// Err is the cause, if any; ErrTooLarge for a broken limit.
	Err error
}

func (e *ArchiveError) Error() string {
	s := "invalid image archive: "
	if e.Entry != "" {
		s += fmt.Sprintf("entry %q: ", e.Entry)
	}
	s += e.Msg
	if e.Err != nil && !errors.Is(e.Err, ErrTooLarge) {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ArchiveError) Unwrap() error { return e.Err }

func archiveErr(entry, format string, args ...any) *ArchiveError {
	return &ArchiveError{Entry: entry, Msg: fmt.Sprintf(format, args...)}
}

func tooLarge(entry, format string, args ...any) *ArchiveError {
	return &ArchiveError{Entry: entry, Msg: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// Image is one name an archive gives.
type Image struct {
	// Name is normalized, as NormalizeName returns it.
	Name string
	// Digest is the manifest (or index) digest index.json gives the name.
	// It is empty for docker save archives, whose manifest containerd
	// writes itself on import; imagestore reports the digest it stored.
	Digest digest.Digest
}

// Archive is an upload Spool accepted.
type Archive struct {
	// release returns the archive's bytes to its SpoolDir's budget.
	release func()

	// Path is the spooled, uncompressed, validated tar, ready for
	// containerd's importer. The caller owns it: call Remove when done.
	Path   string
	Format Format
	// Images are the names the archive gives, in archive order.
	Images []Image
	// Size is the size of the tar at Path.
	Size int64
	// UnpackedSize is the decompressed size of all the layers.
	UnpackedSize int64
}

// Remove deletes the spooled file and, for a SpoolDir's archive, returns
// its bytes to the spool's budget. It is not safe for concurrent use.
func (a *Archive) Remove() error {
	if err := os.Remove(a.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if a.release != nil {
		a.release()
		a.release = nil
	}
	return nil
}
