package logring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBytes     = 1 << 20
	DefaultMaxLineBytes = 16 << 10
	DefaultRetention    = time.Hour
)

// Streams a record can come from.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Config says where rings live and how big they may grow.
type Config struct {
	// Dir holds the rings, as {function}/{revision}/{replica}.log[.1]. Required.
	Dir string
	// MaxBytes bounds one replica's ring on disk. Default 1 MiB.
	MaxBytes int64
	// MaxLineBytes splits longer lines, so one runaway line cannot take the
	// ring. Default 16 KiB.
	MaxLineBytes int
	// Retention is how long the ring of a replica that no longer exists stays
	// readable after its last write. Default 1h.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first problem with a defaulted Config.
func (c Config) Validate() error {
	switch {
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return fmt.Errorf("log dir %q must be an absolute path", c.Dir)
	case c.MaxLineBytes < 64:
		return fmt.Errorf("max log line bytes %d is below 64", c.MaxLineBytes)
	case c.MaxBytes < int64(4*c.MaxLineBytes):
		return fmt.Errorf("max log bytes %d must hold at least four lines of %d bytes", c.MaxBytes, c.MaxLineBytes)
	case c.Retention < 0:
		return errors.New("log retention must not be negative")
	}
	return nil
}

// ReplicaRef names the replica a ring belongs to.
type ReplicaRef struct {
	Function string
	Revision string
	ID       string
}

// name segments are DNS labels or replica ids; refusing anything else keeps
// every ring inside Dir whatever a caller passes.
var segment = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func (r ReplicaRef) validate() error {
	for _, s := range []string{r.Function, r.Revision, r.ID} {
		if len(s) > 128 || !segment.MatchString(s) {
			return fmt.Errorf("log ring name %q is not a plain name", s)
		}
	}
	return nil
}

// Store owns the rings under one directory.
type Store struct {
	cfg Config

	// followers counts active followers, so writers skip the wake-up when
	// nobody listens.
	followers atomic.Int64
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced after each write while followed
}

// New returns a Store over cfg.Dir, creating the directory.
func New(cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	return &Store{cfg: cfg, changed: make(chan struct{})}, nil
}

func (s *Store) path(r ReplicaRef) string {
	return filepath.Join(s.cfg.Dir, r.Function, r.Revision, r.ID+".log")
}

// wait returns a channel closed after the next write.
func (s *Store) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	if s.followers.Load() == 0 {
		return
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Open returns the ring of a replica, appending to what an earlier ring of
// the same replica left (as after an agent restart).
func (s *Store) Open(ref ReplicaRef) (*Ring, error) {
	if err := ref.validate(); err != nil {
		return nil, err
	}
	p := s.path(ref)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("create log dir for %s: %w", ref.ID, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log ring %s: %w", ref.ID, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log ring %s: %w", ref.ID, err)
	}
	r := &Ring{store: s, ref: ref, path: p, f: f, size: st.Size()}
	r.stdout = &lineWriter{ring: r, stream: Stdout}
	r.stderr = &lineWriter{ring: r, stream: Stderr}
	return r, nil
}

// Ring is one replica's log. Its writers are safe for concurrent use.
type Ring struct {
	store *Store
	ref   ReplicaRef
	path  string

	mu     sync.Mutex
	f      *os.File
	size   int64
	err    error // the first write error; later writes are dropped
	buf    []byte
	stdout *lineWriter
	stderr *lineWriter
}

// Ref names the ring's replica.
func (r *Ring) Ref() ReplicaRef { return r.ref }

// Stdout is the writer for the process's standard output.
func (r *Ring) Stdout() io.Writer { return r.stdout }

// Stderr is the writer for the process's standard error.
func (r *Ring) Stderr() io.Writer { return r.stderr }

// Note records a line from the platform itself (such as "exited with code
// 1"), on stream "ebb", so readers see lifecycle events among the output.
func (r *Ring) Note(text string) {
	r.mu.Lock()
	r.appendLocked("ebb", []byte(text))
	r.mu.Unlock()
	r.store.notify()
}

// Close flushes partial lines and closes the file. Writes after Close are dropped.
func (r *Ring) Close() error {
	r.stdout.flush()
	r.stderr.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// appendLocked writes one record, rotating first if it would overflow the
// current segment. Write errors are kept, not returned: a full disk must not
// block or kill the process whose output this is.
func (r *Ring) appendLocked(stream string, text []byte) {
	if r.f == nil || r.err != nil {
		return
	}
	r.buf = r.buf[:0]
	r.buf = strconv.AppendInt(r.buf, r.store.cfg.Now().UnixNano(), 10)
	r.buf = append(r.buf, ' ')
	r.buf = append(r.buf, stream...)
	r.buf = append(r.buf, ' ')
	r.buf = append(r.buf, text...)
	r.buf = append(r.buf, '\n')
	if r.size > 0 && r.size+int64(len(r.buf)) > r.store.cfg.MaxBytes/2 {
		if err := r.rotateLocked(); err != nil {
			r.err = err
			return
		}
	}
	n, err := r.f.Write(r.buf)
	r.size += int64(n)
	if err != nil {
		r.err = err
	}
}

func (r *Ring) rotateLocked() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("close log segment: %w", err)
	}
	r.f = nil
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return fmt.Errorf("rotate log ring: %w", err)
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("open log segment: %w", err)
	}
	r.f, r.size = f, 0
	return nil
}

// Last returns up to n of the ring's last lines, oldest first, each as
// "{stream}: {text}".
func (r *Ring) Last(n int) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs, err := tailRing(r.path, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(recs))
	for i, rec := range recs {
		out[i] = rec.stream + ": " + rec.text
	}
	return out, nil
}

// lineWriter cuts a stream into records at newlines.
type lineWriter struct {
	ring    *Ring
	stream  string
	mu      sync.Mutex // serialises one stream's writes; the ring lock orders streams
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	max := w.ring.store.cfg.MaxLineBytes
	wrote := false
	w.ring.mu.Lock()
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			w.partial = append(w.partial, rest...)
			rest = nil
		} else {
			line := rest[:i]
			rest = rest[i+1:]
			if len(w.partial) > 0 {
				line = append(w.partial, line...)
				w.partial = w.partial[:0]
			}
			for len(line) > max {
				w.ring.appendLocked(w.stream, line[:max])
				line = line[max:]
			}
			w.ring.appendLocked(w.stream, line)
			wrote = true
		}
		for len(w.partial) >= max {
			w.ring.appendLocked(w.stream, w.partial[:max])
			w.partial = append(w.partial[:0], w.partial[max:]...)
			wrote = true
		}
	}
	w.ring.mu.Unlock()
	if wrote {
		w.ring.store.notify()
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) == 0 {
		return
	}
	w.ring.mu.Lock()
	w.ring.appendLocked(w.stream, w.partial)
	w.ring.mu.Unlock()
	w.partial = w.partial[:0]
	w.ring.store.notify()
}

// record is one parsed line of a ring.
type record struct {
	at      int64
	replica string
	stream  string
	text    string
}

// parseRecords parses complete lines of b, keeping those written after
// since; it returns how many bytes it consumed, so a partly written last
// line is read again next time.
func parseRecords(b []byte, replica string, since int64, out []record) ([]record, int) {
	used := 0
	for {
		i := bytes.IndexByte(b[used:], '\n')
		if i < 0 {
			return out, used
		}
		line := b[used : used+i]
		used += i + 1
		if rec, ok := parseRecord(line, replica); ok && rec.at > since {
			out = append(out, rec)
		}
	}
}

func parseRecord(line []byte, replica string) (record, bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return record{}, false
	}
	at, err := strconv.ParseInt(string(line[:sp]), 10, 64)
	if err != nil {
		return record{}, false
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return record{}, false
	}
	return record{at: at, replica: replica, stream: string(rest[:sp]), text: string(rest[sp+1:])}, true
}

// tailRing reads the last n records (all if n <= 0) of the ring at path.
func tailRing(path string, n int) ([]record, error) {
	var recs []record
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read log ring: %w", err)
		}
		recs, _ = parseRecords(b, "", 0, recs)
	}
	if n > 0 && len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	return recs, nil
}
