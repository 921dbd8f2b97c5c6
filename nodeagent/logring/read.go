package logring

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Query selects lines to read.
type Query struct {
	// Function is required.
	Function string
	// Revision limits the lines to one revision; empty means all.
	Revision string
	// Tail is the number of lines to start from, the newest of all the
	// selected replicas' lines together; 0 means every line the rings hold.
	Tail int
	// Since keeps only the lines written after this time, in Unix
	// nanoseconds; 0 keeps all. A reader that merges nodes uses it to follow
	// on from the last line it already has.
	Since int64
	// Follow keeps streaming new lines, from existing and new replicas,
	// until ctx ends.
	Follow bool
	// Timestamps prefixes each line with the time it was written, in Unix
	// nanoseconds and a space, so a reader can merge nodes by time
	// (SplitTimestamp takes it off again).
	Timestamps bool
}

// Read writes the selected lines to w, one per line as
// "{replica} {stream}: {text}", merged across replicas in time order. With
// Follow it then streams new lines until ctx ends, and returns nil then.
func (s *Store) Read(ctx context.Context, w io.Writer, q Query) error {
	if err := (ReplicaRef{Function: q.Function, Revision: nonEmpty(q.Revision), ID: "x"}).validate(); err != nil {
		return err
	}
	if q.Tail < 0 {
		return errors.New("tail must not be negative")
	}
	if q.Since < 0 {
		return errors.New("since must not be negative")
	}
	if q.Follow {
		s.followers.Add(1)
		defer s.followers.Add(-1)
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	followed := map[string]*follower{}
	defer func() {
		for _, f := range followed {
			f.close()
		}
	}()

	// The first pass reads each ring's tail; later passes read what was
	// appended since, and the rings of replicas that appeared meanwhile.
	first := true
	for {
		changed := s.wait() // before reading, so a write during the pass wakes us
		paths, err := s.ringPaths(q)
		if err != nil {
			return err
		}
		var recs []record
		for _, p := range paths {
			f, ok := followed[p]
			if !ok {
				f = &follower{path: p, replica: strings.TrimSuffix(filepath.Base(p), ".log")}
				followed[p] = f
				tail := 0
				if first {
					tail = q.Tail
				}
				if recs, err = f.start(recs, tail, q.Since); err != nil {
					return err
				}
				continue
			}
			if recs, err = f.next(recs, q.Since); err != nil {
				return err
			}
		}
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].at < recs[j].at })
		// Each ring gave its last Tail lines; the newest Tail of them all
		// are the newest Tail lines of the function.
		if first && q.Tail > 0 && len(recs) > q.Tail {
			recs = recs[len(recs)-q.Tail:]
		}
		first = false
		for _, r := range recs {
			if q.Timestamps {
				bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.at, 10))
				bw.WriteByte(' ')
			}
			bw.WriteString(r.replica)
			bw.WriteByte(' ')
			bw.WriteString(r.stream)
			bw.WriteString(": ")
			bw.WriteString(r.text)
			bw.WriteByte('\n')
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write logs: %w", err)
		}
		if !q.Follow {
			return nil
		}
		// Rings of replicas removed long ago are pruned; drop their followers
		// so a long follow does not pile up open files.
		// A rotation briefly leaves only the old segment, so a ring is gone
		// only when both segments are.
		for p, f := range followed {
			if missing(p) && missing(p+".1") {
				f.close()
				delete(followed, p)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(time.Second):
			// A safety net for rings written by another Store on the same
			// directory (as after an agent restart): they do not notify us.
		}
	}
}

func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, os.ErrNotExist)
}

func nonEmpty(s string) string {
	if s == "" {
		return "x"
	}
	return s
}

// ringPaths lists the current segment of every ring matching q, sorted.
func (s *Store) ringPaths(q Query) ([]string, error) {
	pattern := filepath.Join(s.cfg.Dir, q.Function, "*", "*.log")
	if q.Revision != "" {
		pattern = filepath.Join(s.cfg.Dir, q.Function, q.Revision, "*.log")
	}
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("list log rings: %w", err)
	}
	sort.Strings(paths)
	return paths, nil
}

// follower reads one ring incrementally, across rotations, like tail -F.
type follower struct {
	path    string
	replica string
	f       *os.File
	ino     uint64
	pending []byte // a partly written last line, completed by a later read
}

// start reads the ring's last tail records (all if tail is 0) written after
// since and positions the follower at the end of what it read.
func (f *follower) start(out []record, tail int, since int64) ([]record, error) {
	// Open the current segment first: if it rotates before we read the old
	// one, the old one is this very file and must not be read twice.
	cur, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("open log ring: %w", err)
	}
	f.f, f.ino = cur, inode(cur)
	var recs []record
	if old, err := os.Open(f.path + ".1"); err == nil {
		if inode(old) != f.ino {
			b, err := io.ReadAll(old)
			if err != nil {
				old.Close()
				return out, fmt.Errorf("read log ring: %w", err)
			}
			recs, _ = parseRecords(b, f.replica, since, recs)
		}
		old.Close()
	}
	recs, err = f.readCurrent(recs, since)
	if err != nil {
		return out, err
	}
	if tail > 0 && len(recs) > tail {
		recs = recs[len(recs)-tail:]
	}
	return append(out, recs...), nil
}

// next reads what was appended since the last read, following a rotation
// to the new current segment.
func (f *follower) next(out []record, since int64) ([]record, error) {
	if f.f == nil {
		return f.start(out, 0, since)
	}
	out, err := f.readCurrent(out, since)
	if err != nil {
		return out, err
	}
	st, err := os.Stat(f.path)
	if err != nil || statIno(st) == f.ino {
		return out, nil // not rotated (or gone: pruning handles that)
	}
	// Rotated: our file is now the old segment. Read it once more, since the
	// writer may have appended between our read and its rename; nothing is
	// appended to it after that.
	if out, err = f.readCurrent(out, since); err != nil {
		return out, err
	}
	f.close()
	cur, err := os.Open(f.path)
	if err != nil {
		return out, nil
	}
	f.f, f.ino, f.pending = cur, inode(cur), nil
	return f.readCurrent(out, since)
}

func (f *follower) readCurrent(out []record, since int64) ([]record, error) {
	b, err := io.ReadAll(f.f)
	if err != nil {
		return out, fmt.Errorf("read log ring: %w", err)
	}
	if len(f.pending) > 0 {
		b = append(f.pending, b...)
	}
	out, used := parseRecords(b, f.replica, since, out)
	f.pending = append([]byte(nil), b[used:]...)
	return out, nil
}

func (f *follower) close() {
	if f.f != nil {
		f.f.Close()
		f.f = nil
	}
}

func inode(f *os.File) uint64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return statIno(st)
}

func statIno(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// Prune removes the rings of replicas that are not live and have not been
// written for the retention period, and the directories they leave empty.
func (s *Store) Prune(live func(replicaID string) bool) error {
	cutoff := s.cfg.Now().Add(-s.cfg.Retention)
	paths, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*", "*", "*.log"))
	if err != nil {
		return fmt.Errorf("list log rings: %w", err)
	}
	var errs []error
	for _, p := range paths {
		id := strings.TrimSuffix(filepath.Base(p), ".log")
		if live(id) {
			continue
		}
		st, err := os.Stat(p)
		if err != nil || st.ModTime().After(cutoff) {
			continue
		}
		for _, q := range []string{p + ".1", p} {
			if err := os.Remove(q); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		// Remove now-empty revision and function directories; Remove fails
		// harmlessly on a directory that still holds rings.
		rev := filepath.Dir(p)
		_ = os.Remove(rev)
		_ = os.Remove(filepath.Dir(rev))
	}
	return errors.Join(errs...)
}

// SplitTimestamp splits a line that Read wrote with Timestamps into the
// time it was written, in Unix nanoseconds, and the line as Read writes it
// without Timestamps.
func SplitTimestamp(line []byte) (at int64, rest []byte, err error) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return 0, nil, fmt.Errorf("log line %.40q has no timestamp", line)
	}
	at, err = strconv.ParseInt(string(line[:sp]), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("log line %.40q has no timestamp", line)
	}
	return at, line[sp+1:], nil
}
