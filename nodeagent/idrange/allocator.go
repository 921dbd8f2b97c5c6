package idrange

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Allocator hands out ranges and keeps the table in its file. It is safe
// for concurrent use; two Allocators must not share a file.
type Allocator struct {
	path string

	mu sync.Mutex
	t  table
}

// Open reads the table at path, or starts an empty one if there is no
// file, for count ranges of size ids from host id base (DefaultBase,
// DefaultSize, DefaultCount). A file that is not a table of that layout is
// an error, never a fresh start: starting afresh would hand ranges out
// again.
func Open(path string, base, size, count uint32) (*Allocator, error) {
	l := layout{base: base, size: size, count: count}
	if err := l.validate(); err != nil {
		return nil, err
	}
	t := table{layout: l, byNS: map[string]uint32{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read id range table: %w", err)
	default:
		if t, err = decode(data, l); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return &Allocator{path: path, t: t}, nil
}

// For returns namespace's range, handing it the next one if it has none;
// a new range is in the file before For returns it. It wraps ErrFull when
// none is left.
func (a *Allocator) For(namespace string) (Range, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.t.lookup(namespace); ok {
		return r, nil
	}
	t, r, err := a.t.with(namespace)
	if err != nil {
		return Range{}, fmt.Errorf("user id range for namespace %q: %w", namespace, err)
	}
	if err := writeAtomic(a.path, t.encode()); err != nil {
		return Range{}, fmt.Errorf("user id range for namespace %q: %w", namespace, err)
	}
	a.t = t
	return r, nil
}

// writeAtomic replaces path by data so that a crash leaves either the old
// file or the new one, whole: a temporary file beside it, synced, renamed
// over it, and the directory synced so the rename itself survives.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write id range table: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write id range table: %w", err)
	}
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("write id range table: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync id range table: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write id range table: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("replace id range table: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync id range table's dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync id range table's dir: %w", err)
	}
	return nil
}
