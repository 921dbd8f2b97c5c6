package ociimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// spoolPattern names spool files, for os.CreateTemp and for finding the
// ones a dead process left behind.
const spoolPattern = "image-*.tar"

// SpoolDir is the directory a server spools image uploads to, with a bound
// on the bytes that all the uploads in it hold together: the ones still
// arriving and the accepted ones not yet removed. Limits bound each upload;
// without SpoolDir, three uploads at once could each fill MaxSize.
type SpoolDir struct {
	dir string
	max int64

	mu   sync.Mutex
	used int64
}

// Leftovers is what OpenSpoolDir removed: spool files of a process that
// died during an upload.
type Leftovers struct {
	Files int
	Bytes int64
}

// OpenSpoolDir creates dir (mode 0700) if needed and removes the spool files
// a previous process left in it: nothing else removes them once the process
// that wrote them is gone. Only one process may use dir at a time.
// maxBytes bounds the bytes of all uploads in dir together.
func OpenSpoolDir(dir string, maxBytes int64) (*SpoolDir, Leftovers, error) {
	if maxBytes <= 0 {
		return nil, Leftovers{}, fmt.Errorf("spool dir %s: the byte limit must be positive, not %d", dir, maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Leftovers{}, fmt.Errorf("create spool dir: %w", err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, spoolPattern))
	if err != nil {
		return nil, Leftovers{}, fmt.Errorf("spool dir %s: %w", dir, err)
	}
	var left Leftovers
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, left, fmt.Errorf("spool dir: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue // not ours: spool files are regular files
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, left, fmt.Errorf("remove leftover spool file: %w", err)
		}
		left.Files++
		left.Bytes += fi.Size()
	}
	return &SpoolDir{dir: dir, max: maxBytes}, left, nil
}

// Dir is the directory's path.
func (d *SpoolDir) Dir() string { return d.dir }

// Used is the bytes the uploads in the directory hold now.
func (d *SpoolDir) Used() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used
}

// Spool is the package's Spool into d, within d's budget. An upload that
// alone would need more than the budget is refused with an *ArchiveError
// wrapping ErrTooLarge; one that finds the budget held by others is
// refused with an error wrapping ErrSpoolFull. Either way its bytes are
// returned to the budget at once; an accepted archive's are returned by
// its Remove.
func (d *SpoolDir) Spool(r io.Reader, limits Limits) (*Archive, error) {
	var own int64
	reserve := func(n int64) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if own+n > d.max {
			return tooLarge("", "the archive decompresses to more than the image spool's total of %d bytes", d.max)
		}
		if d.used+n > d.max {
			return fmt.Errorf("%w: uploads in progress hold %d of its %d bytes; retry when they finish", ErrSpoolFull, d.used, d.max)
		}
		d.used += n
		own += n
		return nil
	}
	// own is only written by reserve, which runs on this goroutine while
	// spoolFile does; release reads it under the lock all the same.
	release := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.used -= own
		own = 0
	}
	a, err := spoolFile(r, d.dir, limits, reserve)
	if err != nil {
		release()
		return nil, err
	}
	a.release = release
	return a, nil
}
