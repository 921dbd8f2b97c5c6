package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ebbrun/ebb/api"
)

// Event is one audit line.
type Event = api.AuditEvent

// FileName is the file the log appends to, in its directory.
const FileName = "audit.log"

// Defaults of Options. 16 files of 16 MiB keep about a million lines (a
// line is about 200 bytes) in at most 256 MiB.
const (
	DefaultMaxFileBytes = 16 << 20
	DefaultMaxFiles     = 16
)

// maxField bounds each string of an event, so that a hostile path or
// header cannot make one line megabytes long; maxPending bounds the lines
// held in memory while the disk refuses them.
const (
	maxField   = 1024
	maxPending = 4096
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit log closed")

// Options configure a Log. The zero value of each field is its default.
type Options struct {
	// MaxFileBytes is the size past which audit.log is rotated. Default
	// DefaultMaxFileBytes. A line is never split: one larger than this gets
	// a file of its own.
	MaxFileBytes int64
	// MaxFiles is how many files are kept, audit.log included; the oldest
	// rotated file is removed past it. Default DefaultMaxFiles, at least 2.
	MaxFiles int
	// Now is the clock that stamps events without a time; nil is time.Now.
	Now func() time.Time
}

// file is what the log needs of an *os.File; tests substitute a failing one.
type file interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

// Log appends events to the audit log of one directory. One Log per
// directory per process: it alone writes there. Its methods are safe for
// concurrent use; lines never interleave.
type Log struct {
	dir  string
	opts Options
	open func(path string) (file, int64, error)

	mu      sync.Mutex // serializes writes, rotation and the opening of files by readers
	f       file       // audit.log, nil until opened (or after a failed rotation)
	size    int64
	seq     uint64   // number of the newest rotated file
	torn    bool     // a failed write left a partial line that could not be cut off
	pending [][]byte // lines not yet on disk, oldest first
	lastErr error    // why pending is not empty
	closed  bool
}

// Open opens (creating it) the audit log in dir.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxFileBytes == 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.MaxFiles == 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.MaxFileBytes < 0:
		return nil, fmt.Errorf("audit: max file bytes %d is negative", opts.MaxFileBytes)
	case opts.MaxFiles < 2:
		return nil, fmt.Errorf("audit: max files %d: at least 2 (audit.log and one rotated file)", opts.MaxFiles)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{dir: dir, opts: opts, open: openAppend}
	rotated, err := rotatedFiles(dir)
	if err != nil {
		return nil, err
	}
	if n := len(rotated); n > 0 {
		l.seq = rotated[n-1].seq
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.openLocked(); err != nil {
		return nil, err
	}
	if err := l.pruneLocked(); err != nil {
		_ = l.f.Close()
		return nil, err
	}
	return l, nil
}

func openAppend(path string) (file, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Dir is the directory the log writes to.
func (l *Log) Dir() string { return l.dir }

// Record appends e as one line and returns once the line is on disk (written
// and fsync'ed). It stamps a zero Time with the clock, takes a missing
// TokenID from ctx (WithActor), and cuts over-long strings. When the line
// cannot be written it is kept in memory and written before any later line
// once the disk takes writes again; Record then returns the error, and
// Ready keeps returning it until then.
//
// Besides the API middleware, code that reads a secret on a node agent's
// behalf calls Record with Verb "read-secret", Object "secrets/{name}" and
// the node's credential id, before it answers.
func (l *Log) Record(ctx context.Context, e Event) error {
	line, err := l.encode(ctx, e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.flushLocked(); err != nil {
		return l.holdLocked(line, err)
	}
	if err := l.appendLocked(line); err != nil {
		return l.holdLocked(line, err)
	}
	return nil
}

// Ready reports whether the log takes writes: it first writes the lines
// held since a failure, and returns the error if that still fails. The
// middleware refuses mutating calls while it fails, so that nothing changes
// unaudited.
func (l *Log) Ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.flushLocked()
}

// Close writes the lines held since a failure, if it can, and closes the
// file. Lines it cannot write are lost with the error it returns.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.flushLocked()
	if l.f != nil {
		err = errors.Join(err, l.f.Close())
		l.f = nil
	}
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

func (l *Log) encode(ctx context.Context, e Event) ([]byte, error) {
	if e.Time.IsZero() {
		e.Time = l.opts.Now()
	}
	e.Time = e.Time.UTC()
	if e.TokenID == "" {
		e.TokenID = ActorFrom(ctx)
	}
	for _, s := range []*string{&e.TokenID, &e.Namespace, &e.Verb, &e.Object, &e.Code, &e.RequestID} {
		*s = clip(*s)
	}
	// encoding/json escapes newlines and control characters, so a name
	// carrying "\n" cannot start a line of its own.
	line, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	return append(line, '\n'), nil
}

// clip cuts s to maxField bytes at a rune boundary, saying so.
func clip(s string) string {
	const mark = "...(truncated)"
	if len(s) <= maxField {
		return s
	}
	cut := maxField - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func (l *Log) holdLocked(line []byte, err error) error {
	if len(l.pending) >= maxPending {
		return fmt.Errorf("audit: %d lines already wait for the disk, this one is dropped: %w", len(l.pending), err)
	}
	l.pending = append(l.pending, line)
	l.lastErr = err
	return err
}

// flushLocked writes the held lines, oldest first.
func (l *Log) flushLocked() error {
	for len(l.pending) > 0 {
		if err := l.appendLocked(l.pending[0]); err != nil {
			l.lastErr = err
			return fmt.Errorf("audit: %d lines wait for the disk: %w", len(l.pending), err)
		}
		l.pending[0] = nil
		l.pending = l.pending[1:]
	}
	l.lastErr = nil
	return nil
}

// appendLocked writes one line and fsyncs it, rotating first if the line
// would take audit.log past its size. Each line is fsync'ed on its own:
// mutating calls come at human and CI rates and each already waits for a
// store transaction's fsync, so a second one per call costs little, and a
// nil from Record then means this line is on disk, with no batching window
// in which an answered call's line could be lost.
func (l *Log) appendLocked(line []byte) error {
	if l.f == nil {
		if err := l.openLocked(); err != nil {
			return err
		}
	}
	if l.size > 0 && l.size+int64(len(line)) > l.opts.MaxFileBytes {
		if err := l.rotateLocked(); err != nil {
			return err
		}
	}
	buf := line
	if l.torn {
		// End the partial line a failed write left, so that this line
		// starts a line of its own; readers skip the fragment.
		buf = append([]byte{'\n'}, line...)
	}
	n, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		// Cut off what reached the file, so that the retry does not
		// follow a partial copy of the same line.
		if terr := l.f.Truncate(l.size); terr != nil {
			l.torn = true
		}
		return fmt.Errorf("audit: write %s: %w", filepath.Join(l.dir, FileName), err)
	}
	l.size += int64(n)
	l.torn = false
	return nil
}

func (l *Log) openLocked() error {
	f, size, err := l.open(filepath.Join(l.dir, FileName))
	if err != nil {
		return fmt.Errorf("audit: open: %w", err)
	}
	l.f, l.size = f, size
	return syncDir(l.dir)
}

// rotateLocked renames audit.log to the next numbered file and starts a new
// one. Every line in the old file was fsync'ed when written.
func (l *Log) rotateLocked() error {
	old := filepath.Join(l.dir, FileName)
	next := filepath.Join(l.dir, rotatedName(l.seq+1))
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	l.f = nil
	if err := os.Rename(old, next); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	l.seq++
	l.torn = false // a fragment at the end of the old file ends there
	if err := l.openLocked(); err != nil {
		return err
	}
	return l.pruneLocked()
}

// pruneLocked removes the oldest rotated files past MaxFiles.
func (l *Log) pruneLocked() error {
	rotated, err := rotatedFiles(l.dir)
	if err != nil {
		return err
	}
	for len(rotated) > l.opts.MaxFiles-1 {
		if err := os.Remove(filepath.Join(l.dir, rotated[0].name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: remove old file: %w", err)
		}
		rotated = rotated[1:]
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: sync dir: %w", err)
	}
	return nil
}

const rotatedPrefix, rotatedSuffix = "audit-", ".log"

func rotatedName(seq uint64) string {
	return fmt.Sprintf("%s%010d%s", rotatedPrefix, seq, rotatedSuffix)
}

type rotatedFile struct {
	name string
	seq  uint64
}

// rotatedFiles lists the rotated files of dir, oldest first.
func rotatedFiles(dir string) ([]rotatedFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: list %s: %w", dir, err)
	}
	var out []rotatedFile
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, rotatedPrefix) || !strings.HasSuffix(name, rotatedSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, rotatedPrefix), rotatedSuffix), 10, 64)
		if err != nil {
			continue // not ours
		}
		out = append(out, rotatedFile{name: name, seq: seq})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}
