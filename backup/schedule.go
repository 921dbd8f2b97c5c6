package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Scheduled backups are files named filePrefix + UTC time + fileSuffix in
// one directory, so that name order is age order.
const (
	filePrefix = "ebb-backup-"
	fileSuffix = ".ebbak"
	timeLayout = "20060102T150405.000Z"
)

// ScheduleConfig configures ebbd's scheduled backups.
type ScheduleConfig struct {
	// Dir holds the backups. Must be absolute.
	Dir string
	// Interval is how often a backup is taken: the recovery point
	// objective. Zero turns scheduled backups off.
	Interval time.Duration
	// Keep is how many backups are kept; older ones are removed after each
	// new one is written. At least 1.
	Keep int
}

// Validate checks a config whose Interval is set.
func (c ScheduleConfig) Validate() error {
	switch {
	case c.Interval == 0:
		return nil
	case c.Interval < time.Second:
		return fmt.Errorf("backup interval %v is under a second", c.Interval)
	case c.Keep < 1:
		return fmt.Errorf("backup keep %d: keep at least 1", c.Keep)
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("backup dir %q is not absolute", c.Dir)
	}
	return nil
}

// DumpFunc writes one backup to w.
type DumpFunc func(ctx context.Context, w io.Writer) (Header, error)

// Scheduler takes a backup every Interval.
type Scheduler struct {
	cfg  ScheduleConfig
	dump DumpFunc
	log  *slog.Logger
	now  func() time.Time
}

// NewScheduler returns a scheduler; now nil means time.Now.
func NewScheduler(cfg ScheduleConfig, dump DumpFunc, log *slog.Logger, now func() time.Time) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		return nil, errors.New("backup interval is zero")
	}
	if now == nil {
		now = time.Now
	}
	return &Scheduler{cfg: cfg, dump: dump, log: log, now: now}, nil
}

// Run takes a backup every interval until ctx ends. A failed backup is
// logged and tried again at the next tick.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("backup dir: %w", err)
	}
	removeTemps(s.cfg.Dir)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		path, h, err := s.Once(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Error("scheduled backup failed", "dir", s.cfg.Dir, "err", err)
			continue
		}
		s.log.Info("scheduled backup written", "file", path, "revision", h.Revision, "records", h.Records)
	}
}

// Once writes one backup and prunes the oldest beyond Keep.
func (s *Scheduler) Once(ctx context.Context) (string, Header, error) {
	name := filePrefix + s.now().UTC().Format(timeLayout) + fileSuffix
	path := filepath.Join(s.cfg.Dir, name)
	var h Header
	err := WriteFileAtomic(path, func(w *os.File) error {
		var err error
		h, err = s.dump(ctx, w)
		return err
	})
	if err != nil {
		return "", Header{}, err
	}
	if err := Prune(s.cfg.Dir, s.cfg.Keep); err != nil {
		return path, h, fmt.Errorf("prune backups: %w", err)
	}
	return path, h, nil
}

// WriteFileAtomic writes path through a temporary file in its directory:
// written (write may also read it back, to verify it), synced, renamed
// over path, and the directory synced, so path is either the whole new
// file or absent (or the old file), never a part.
func WriteFileAtomic(path string, write func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Prune removes the oldest scheduled backups in dir beyond keep.
func Prune(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, fileSuffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var errs []error
	for len(names) > keep {
		errs = append(errs, os.Remove(filepath.Join(dir, names[0])))
		names = names[1:]
	}
	return errors.Join(errs...)
}

// removeTemps removes what a process killed mid-backup left.
func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "."+filePrefix) && strings.HasSuffix(n, ".tmp") {
			os.Remove(filepath.Join(dir, n))
		}
	}
}
