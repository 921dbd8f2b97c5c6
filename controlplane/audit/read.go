package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Query selects events. The zero value selects every event.
type Query struct {
	// Since keeps events at or after it.
	Since time.Time
	// Namespace keeps the events of one namespace; empty keeps all.
	Namespace string
	// Limit keeps the newest Limit matching events; 0 keeps all.
	Limit int
}

// Result is what a read found: the matching events, oldest first, and how
// many lines were not events (torn by a crash or a full disk).
type Result struct {
	Events  []Event
	Skipped int
}

// Read returns the events of the log that match q, oldest first, across
// audit.log and its rotated files. It opens every file under the writer's
// lock, so that a rotation during the read neither hides nor repeats a line,
// and reads them without it. A line still being written is left out.
func (l *Log) Read(q Query) (Result, error) {
	l.mu.Lock()
	files, err := openAll(l.dir)
	l.mu.Unlock()
	if err != nil {
		return Result{}, err
	}
	return readFiles(files, q)
}

// ReadDir reads the audit log of dir like Log.Read, for a process that does
// not write it (an operator's tool). A rotation by the writer during the
// read may hide the lines it moved.
func ReadDir(dir string, q Query) (Result, error) {
	files, err := openAll(dir)
	if err != nil {
		return Result{}, err
	}
	return readFiles(files, q)
}

// openAll opens the log's files, oldest first.
func openAll(dir string) ([]*os.File, error) {
	rotated, err := rotatedFiles(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rotated)+1)
	for _, r := range rotated {
		names = append(names, r.name)
	}
	names = append(names, FileName)
	files := make([]*os.File, 0, len(names))
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // audit.log before the first line, or a file pruned meanwhile
		}
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("audit: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// readFiles scans files newest first, so that a Limit stops the read early,
// and skips files last written before Since: every line in a file was
// stamped before the file's last write.
func readFiles(files []*os.File, q Query) (Result, error) {
	defer closeAll(files)
	var res Result
	var chunks [][]Event // per file, newest file first
	need := q.Limit
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		if !q.Since.IsZero() {
			st, err := f.Stat()
			if err != nil {
				return Result{}, fmt.Errorf("audit: %w", err)
			}
			if st.ModTime().Before(q.Since) {
				break
			}
		}
		events, skipped, err := scan(f, q, need)
		if err != nil {
			return Result{}, err
		}
		res.Skipped += skipped
		chunks = append(chunks, events)
		if q.Limit > 0 {
			need -= len(events)
			if need == 0 {
				break
			}
		}
	}
	for i := len(chunks) - 1; i >= 0; i-- {
		res.Events = append(res.Events, chunks[i]...)
	}
	return res, nil
}

// maxLine bounds a line the reader accepts; Record writes none longer
// (every field is clipped), so a longer one is damage.
const maxLine = 64 << 10

// scan returns the matching events of one file in order, the newest keep
// of them when keep > 0, and the number of lines that were not events.
func scan(f *os.File, q Query, keep int) ([]Event, int, error) {
	r := bufio.NewReaderSize(f, maxLine)
	var out []Event
	skipped := 0
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			skipped++
			if err := discardLine(r); err != nil {
				return tail(out, keep), skipped, nil // the over-long line ran to the end: it was never finished
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			// A line without its newline is being written, or was torn;
			// either way it is not (yet) an event.
			return tail(out, keep), skipped, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("audit: read %s: %w", f.Name(), err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil || e.Time.IsZero() {
			skipped++
			continue
		}
		if e.Time.Before(q.Since) || (q.Namespace != "" && e.Namespace != q.Namespace) {
			continue
		}
		out = append(out, e)
		if keep > 0 && len(out) > 2*keep {
			// Keep memory bounded by the limit, not the file.
			out = append(out[:0], tail(out, keep)...)
		}
	}
}

// discardLine reads past the next newline.
func discardLine(r *bufio.Reader) error {
	for {
		_, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return err
	}
}

// tail returns the last keep events, or all when keep is 0.
func tail(events []Event, keep int) []Event {
	if keep > 0 && len(events) > keep {
		return events[len(events)-keep:]
	}
	return events
}
