package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Outputs Config.Output takes besides a file path.
const (
	OutputOff    = ""
	OutputStdout = "stdout"
)

// Defaults for Config fields left zero.
const (
	DefaultRingLines     = 100
	DefaultMaxSizeMB     = 100
	DefaultMaxBackups    = 5
	DefaultFlushInterval = 200 * time.Millisecond
)

// Config configures a Logger.
type Config struct {
	// Output is where lines go: OutputStdout, or the absolute path of a
	// file that is rotated by size. OutputOff writes nothing (the rings
	// still keep lines).
	Output string
	// SampleRate is the fraction of lines written to Output, in (0, 1].
	// Lines of errors (status >= 500) and cold starts are always written.
	// 0 means 1: every line.
	SampleRate float64
	// RingLines is how many recent lines each function keeps in memory for
	// `ebb logs --access`. Default 100.
	RingLines int
	// MaxSizeMB is the size at which the file is rotated; MaxBackups how
	// many rotated files are kept, MaxAgeDays for how long (0: no limit).
	// Defaults 100 and 5.
	MaxSizeMB, MaxBackups, MaxAgeDays int
	// FlushInterval bounds how long a written line stays in the buffer.
	// Default 200ms.
	FlushInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.SampleRate == 0 {
		c.SampleRate = 1
	}
	if c.RingLines == 0 {
		c.RingLines = DefaultRingLines
	}
	if c.MaxSizeMB == 0 {
		c.MaxSizeMB = DefaultMaxSizeMB
	}
	if c.MaxBackups == 0 {
		c.MaxBackups = DefaultMaxBackups
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Output != OutputOff && c.Output != OutputStdout && !filepath.IsAbs(c.Output):
		return fmt.Errorf("access log %q: want %q or an absolute file path", c.Output, OutputStdout)
	case math.IsNaN(c.SampleRate) || c.SampleRate < 0 || c.SampleRate > 1:
		return fmt.Errorf("access log sample rate %v: must be in (0, 1]", c.SampleRate)
	case c.RingLines < 0 || c.RingLines > 100000:
		return fmt.Errorf("access log ring of %d lines: must be between 1 and 100000", c.RingLines)
	case c.MaxSizeMB < 0 || c.MaxBackups < 0 || c.MaxAgeDays < 0 || c.FlushInterval < 0:
		return errors.New("access log rotation sizes, ages and intervals must not be negative")
	}
	return nil
}

// Logger writes access lines and keeps each function's recent ones. Log is
// safe for concurrent use; Run flushes the buffer.
type Logger struct {
	cfg       Config
	threshold uint64 // a line is written when a random uint64 is below it
	rings     *rings
	bufs      sync.Pool

	mu     sync.Mutex // guards out
	out    *bufio.Writer
	closer io.Closer
}

// New returns a Logger for cfg. stdout is where OutputStdout goes.
func New(cfg Config, stdout io.Writer) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Logger{cfg: cfg, rings: newRings(cfg.RingLines)}
	l.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	l.threshold = math.MaxUint64
	if cfg.SampleRate < 1 {
		l.threshold = uint64(cfg.SampleRate * math.MaxUint64)
	}
	switch cfg.Output {
	case OutputOff:
	case OutputStdout:
		l.out = bufio.NewWriterSize(stdout, 64<<10)
	default:
		f := &lumberjack.Logger{
			Filename:   cfg.Output,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			MaxAge:     cfg.MaxAgeDays,
		}
		l.out, l.closer = bufio.NewWriterSize(f, 64<<10), f
	}
	return l, nil
}

// Log records r: in its function's ring, and in the output when sampled.
func (l *Logger) Log(r *Record) {
	bp := l.bufs.Get().(*[]byte)
	line := AppendJSON((*bp)[:0], r)
	if l.out != nil && (r.Status >= 500 || r.Cold || l.threshold == math.MaxUint64 || rand.Uint64() < l.threshold) {
		l.mu.Lock()
		// A failing output must not fail requests; the error shows on
		// the next flush.
		_, _ = l.out.Write(line)
		l.mu.Unlock()
	}
	if r.Function != "" {
		l.rings.add(r.Function, line)
	}
	*bp = line
	l.bufs.Put(bp)
}

// Flush writes out buffered lines.
func (l *Logger) Flush() error {
	if l.out == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.out.Flush(); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	return nil
}

// Run flushes the output every FlushInterval until ctx ends, then flushes
// it a last time and closes the file. A write error does not stop it (a full
// disk is no reason to stop serving); the first one is returned at the end.
func (l *Logger) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.FlushInterval)
	defer t.Stop()
	var first error
	for {
		select {
		case <-ctx.Done():
			err := errors.Join(first, l.Flush())
			if l.closer != nil {
				err = errors.Join(err, l.closer.Close())
			}
			return err
		case <-t.C:
			if err := l.Flush(); err != nil && first == nil {
				first = err
			}
		}
	}
}
