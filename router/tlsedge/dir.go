package tlsedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Dir is the certificates of a directory, reloaded when it changes.
type Dir struct {
	path string
	log  *slog.Logger

	index atomic.Pointer[Index]
	// mu guards pairs, the last good version of each pair by name, and
	// serializes reloads.
	mu    sync.Mutex
	pairs map[string]Pair
	// reloads counts finished reloads, for tests and metrics.
	reloads atomic.Uint64
}

// OpenDir loads the pairs of dir. It fails when the directory cannot be
// read or a pair in it does not load: a router started with a broken
// certificate should say so at once. Run watches it afterwards.
func OpenDir(dir string, log *slog.Logger) (*Dir, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dir{path: dir, log: log, pairs: map[string]Pair{}}
	if errs := d.Reload(); errs != nil {
		return nil, fmt.Errorf("tls cert dir %s: %w", dir, errs)
	}
	return d, nil
}

// Index is the current index.
func (d *Dir) Index() *Index { return d.index.Load() }

// Reloads is how many reloads have finished.
func (d *Dir) Reloads() uint64 { return d.reloads.Load() }

// pairFiles lists the directory's pairs: NAME.crt with NAME.key, or
// NAME.pem holding the certificate chain and the key. Hidden files (the
// ..data links of a Kubernetes secret volume) are skipped; what they link
// to is read through the visible names.
func pairFiles(dir string) (map[string][2]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	out := map[string][2]string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch ext := filepath.Ext(name); ext {
		case ".crt", ".pem":
			base := strings.TrimSuffix(name, ext)
			key := name
			if have[base+".key"] {
				key = base + ".key"
			} else if ext == ".crt" {
				continue // a certificate without its key yet
			}
			if _, dup := out[base]; !dup || ext == ".crt" {
				out[base] = [2]string{filepath.Join(dir, name), filepath.Join(dir, key)}
			}
		}
	}
	return out, nil
}

// Reload reads the directory again and swaps in a new index. A pair that
// fails to load keeps its last good version (and the error is returned);
// a pair whose files are gone is dropped.
func (d *Dir) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.reloads.Add(1)
	files, err := pairFiles(d.path)
	if err != nil {
		return err
	}
	var errs []error
	next := make(map[string]Pair, len(files))
	for name, f := range files {
		cert, err := tls.LoadX509KeyPair(f[0], f[1])
		if err == nil && cert.Leaf == nil {
			err = errors.New("no leaf certificate")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pair %s: %w", name, err))
			if old, ok := d.pairs[name]; ok {
				next[name] = old
			}
			continue
		}
		next[name] = Pair{Name: name, Cert: &cert}
	}
	d.pairs = next
	list := make([]Pair, 0, len(next))
	for _, p := range next {
		list = append(list, p)
	}
	d.index.Store(NewIndex(list))
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// settle is how long a burst of changes (a certificate and its key
// written one after the other, a secret volume's link swapped) is let
// finish before the directory is read again.
const settle = 100 * time.Millisecond

// Run reloads the directory whenever it changes, until ctx ends.
func (d *Dir) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("tls cert dir: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(d.path); err != nil {
		return fmt.Errorf("tls cert dir: watch %s: %w", d.path, err)
	}
	pending := time.NewTimer(time.Hour)
	pending.Stop()
	defer pending.Stop()
	// armed: a reload is due settle after the first change of a burst;
	// later changes do not push it back, so a steady stream of changes
	// still reloads every settle.
	armed := false
	arm := func() {
		if !armed {
			armed = true
			pending.Reset(settle)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			d.log.Debug("tls cert dir changed", "event", ev.String())
			arm()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed queue lost events: read it all again.
			d.log.Warn("tls cert dir watch", "err", err)
			arm()
		case <-pending.C:
			armed = false
			if err := d.Reload(); err != nil {
				d.log.Warn("tls cert dir: some pairs did not load; they keep their last good version", "err", err)
			} else {
				d.log.Info("tls cert dir reloaded", "names", d.Index().Len())
			}
		}
	}
}
