package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func openTest(t *testing.T, opts Options) (*Log, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	if opts.Now == nil {
		opts.Now = (&clock{now: t0}).Now
	}
	l, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, dir
}

// fileLines returns the lines of audit.log.
func fileLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	require.NoError(t, err)
	s := string(b)
	if s == "" {
		return nil
	}
	require.True(t, strings.HasSuffix(s, "\n"), "the file ends with a whole line")
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestRecordWritesOneEscapedLinePerEvent(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	cases := []struct {
		name string
		in   Event
		ctx  context.Context
		want func(t *testing.T, got Event)
	}{
		{
			name: "plain",
			in:   Event{TokenID: "tok1", Namespace: "team-a", Verb: "create", Object: "functions/hello", Status: 201},
			want: func(t *testing.T, got Event) {
				assert.Equal(t, Event{Time: t0.Add(time.Millisecond), TokenID: "tok1", Namespace: "team-a", Verb: "create", Object: "functions/hello", Status: 201}, got)
			},
		},
		{
			name: "newlines and quotes stay inside the line",
			in:   Event{TokenID: "admin", Verb: "update", Object: "functions/a\nb\r\n{\"time\":\"x\"}\u2028", Status: 400, Code: "invalid"},
			want: func(t *testing.T, got Event) {
				assert.Equal(t, "functions/a\nb\r\n{\"time\":\"x\"}\u2028", got.Object)
				assert.Equal(t, "invalid", got.Code)
			},
		},
		{
			name: "a very long object is clipped",
			in:   Event{TokenID: "admin", Verb: "delete", Object: "functions/" + long, RequestID: long},
			want: func(t *testing.T, got Event) {
				assert.LessOrEqual(t, len(got.Object), maxField)
				assert.True(t, strings.HasSuffix(got.Object, "...(truncated)"))
				assert.LessOrEqual(t, len(got.RequestID), maxField)
			},
		},
		{
			name: "clipping keeps whole runes",
			in:   Event{TokenID: "admin", Verb: "delete", Object: strings.Repeat("é", 2000)},
			want: func(t *testing.T, got Event) {
				assert.True(t, strings.HasPrefix(got.Object, strings.Repeat("é", 400)))
				assert.NotContains(t, got.Object, "\uFFFD")
			},
		},
		{
			name: "the actor comes from the context",
			ctx:  WithActor(context.Background(), "tok9"),
			in:   Event{Verb: "read-secret", Namespace: "team-a", Object: "secrets/db", Status: 200},
			want: func(t *testing.T, got Event) { assert.Equal(t, "tok9", got.TokenID) },
		},
		{
			name: "a given time is kept, in UTC",
			in:   Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), TokenID: "admin", Verb: "create"},
			want: func(t *testing.T, got Event) {
				assert.Equal(t, time.Date(2026, 1, 2, 2, 4, 5, 6, time.UTC), got.Time)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := openTest(t, Options{})
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			require.NoError(t, l.Record(ctx, tc.in))
			lines := fileLines(t, dir)
			require.Len(t, lines, 1)
			assert.Contains(t, lines[0], `"time":"`)
			assert.NotContains(t, lines[0], "+01:00", "times are UTC")
			res, err := l.Read(Query{})
			require.NoError(t, err)
			require.Len(t, res.Events, 1)
			tc.want(t, res.Events[0])
		})
	}
}

func TestTimeIsRFC3339NanoUTC(t *testing.T) {
	l, dir := openTest(t, Options{Now: func() time.Time { return time.Date(2026, 12, 6, 14, 0, 0, 123456789, time.Local) }})
	require.NoError(t, l.Record(context.Background(), Event{TokenID: "admin", Verb: "create"}))
	want := time.Date(2026, 12, 6, 14, 0, 0, 123456789, time.Local).UTC().Format(time.RFC3339Nano)
	assert.Contains(t, fileLines(t, dir)[0], `"time":"`+want+`"`)
}

func record(t *testing.T, l *Log, n int, ns string) {
	t.Helper()
	for i := range n {
		require.NoError(t, l.Record(context.Background(), Event{TokenID: "admin", Namespace: ns, Verb: "update", Object: fmt.Sprintf("functions/f%d", i), Status: 200}))
	}
}

func objects(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Object)
	}
	return out
}

func seqObjects(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("functions/f%d", i))
	}
	return out
}

func TestRotationKeepsMaxFilesAndReadsInOrder(t *testing.T) {
	l, dir := openTest(t, Options{MaxFileBytes: 1000, MaxFiles: 3})
	record(t, l, 100, "default")

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 3, "audit.log and two rotated files")
	for _, e := range entries {
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		assert.LessOrEqual(t, st.Size(), int64(1000), e.Name())
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), e.Name())
	}
	res, err := l.Read(Query{})
	require.NoError(t, err)
	require.NotEmpty(t, res.Events)
	first := len(seqObjects(0, 100)) - len(res.Events)
	assert.Equal(t, seqObjects(first, 100), objects(res.Events), "the kept lines, oldest first, none missing in between")

	// A new process continues the numbering and the current file.
	require.NoError(t, l.Close())
	l2, err := Open(dir, Options{MaxFileBytes: 1000, MaxFiles: 3, Now: (&clock{now: t0.Add(time.Hour)}).Now})
	require.NoError(t, err)
	defer l2.Close()
	require.NoError(t, l2.Record(context.Background(), Event{TokenID: "admin", Verb: "create", Object: "functions/after"}))
	res, err = l2.Read(Query{Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"functions/f99", "functions/after"}, objects(res.Events))
	rotated, err := rotatedFiles(dir)
	require.NoError(t, err)
	assert.Greater(t, rotated[0].seq, uint64(1), "old files were pruned, numbers only grow")
}

func TestReadFilters(t *testing.T) {
	l, _ := openTest(t, Options{MaxFileBytes: 700, MaxFiles: 100})
	// f0..f9 in team-a at t0+1ms..t0+10ms, then f0..f9 in team-b.
	record(t, l, 10, "team-a")
	record(t, l, 10, "team-b")
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name string
		q    Query
		want []string
		ns   []string
	}{
		{name: "all", q: Query{}, want: append(seqObjects(0, 10), seqObjects(0, 10)...)},
		{name: "namespace", q: Query{Namespace: "team-b"}, want: seqObjects(0, 10), ns: []string{"team-b"}},
		{name: "limit keeps the newest", q: Query{Limit: 3}, want: seqObjects(7, 10), ns: []string{"team-b"}},
		{name: "limit across files", q: Query{Limit: 12}, want: append(seqObjects(8, 10), seqObjects(0, 10)...)},
		{name: "since is inclusive", q: Query{Since: ms(9)}, want: append(seqObjects(8, 10), seqObjects(0, 10)...)},
		{name: "since, namespace and limit", q: Query{Since: ms(5), Namespace: "team-a", Limit: 2}, want: seqObjects(8, 10), ns: []string{"team-a"}},
		{name: "nothing matches", q: Query{Namespace: "team-c"}, want: nil},
		{name: "limit larger than the log", q: Query{Namespace: "team-a", Limit: 1000}, want: seqObjects(0, 10)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := l.Read(tc.q)
			require.NoError(t, err)
			assert.Equal(t, tc.want, objects(res.Events))
			assert.Zero(t, res.Skipped)
			for _, e := range res.Events {
				if tc.ns != nil {
					assert.Contains(t, tc.ns, e.Namespace)
				}
			}
			dirRes, err := ReadDir(l.Dir(), tc.q)
			require.NoError(t, err)
			assert.Equal(t, res, dirRes, "ReadDir reads the same")
		})
	}
}

func TestReadSkipsFilesOlderThanSince(t *testing.T) {
	l, dir := openTest(t, Options{MaxFileBytes: 700, MaxFiles: 100})
	record(t, l, 20, "default")
	rotated, err := rotatedFiles(dir)
	require.NoError(t, err)
	require.NotEmpty(t, rotated)
	// Make the oldest file unreadable as events: if Since skips it by its
	// modification time, nothing notices.
	old := filepath.Join(dir, rotated[0].name)
	require.NoError(t, os.WriteFile(old, []byte("garbage\n"), 0o600))
	require.NoError(t, os.Chtimes(old, t0, t0))
	res, err := l.Read(Query{Since: t0.Add(time.Second)})
	require.NoError(t, err)
	assert.Zero(t, res.Skipped)
	res, err = l.Read(Query{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Skipped, "a full read finds the garbage line")
}

func TestReadSkipsDamagedLines(t *testing.T) {
	l, dir := openTest(t, Options{})
	record(t, l, 1, "default")
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("{\"time\":\"2026-12-06T13:00\n" + // torn
		"\n" + // empty
		strings.Repeat("y", 3*maxLine) + "\n" + // over-long
		"{}\n") // not an event
	require.NoError(t, err)
	require.NoError(t, f.Close())
	record(t, l, 2, "default")
	// A line being written has no newline yet.
	f, err = os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"time":"2026-12-06T13:00:00Z","verb":"create"`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	res, err := l.Read(Query{})
	require.NoError(t, err)
	assert.Equal(t, []string{"functions/f0", "functions/f0", "functions/f1"}, objects(res.Events))
	assert.Equal(t, 3, res.Skipped)
}

func TestConcurrentWritersNeverInterleave(t *testing.T) {
	l, dir := openTest(t, Options{MaxFileBytes: 4096, MaxFiles: 1000})
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				assert.NoError(t, l.Record(context.Background(), Event{
					TokenID: fmt.Sprintf("w%d", w), Verb: "update", Object: fmt.Sprintf("%d", i) + strings.Repeat("z", i*7),
				}))
			}
		})
	}
	// Readers during the writes see a consistent log: each writer's lines
	// in order, none repeated, however the files rotate under them.
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := l.Read(Query{})
			if !assert.NoError(t, err) {
				return
			}
			assertPerWriterOrder(t, res.Events, false)
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()

	res, err := l.Read(Query{})
	require.NoError(t, err)
	assert.Zero(t, res.Skipped)
	require.Len(t, res.Events, writers*each)
	assertPerWriterOrder(t, res.Events, true)
	// Every file holds whole lines only.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, maxLine)
		for sc.Scan() {
			assert.True(t, strings.HasPrefix(sc.Text(), `{"time":`) && strings.HasSuffix(sc.Text(), "}"), sc.Text())
		}
		require.NoError(t, sc.Err())
		_ = f.Close()
	}
}

// assertPerWriterOrder checks that each writer's lines come in the order
// written, from 0 with no gap when complete, and from any point otherwise.
func assertPerWriterOrder(t *testing.T, events []Event, complete bool) {
	t.Helper()
	next := map[string]int{}
	for _, e := range events {
		var i int
		_, err := fmt.Sscanf(e.Object, "%d", &i)
		require.NoError(t, err)
		want, seen := next[e.TokenID]
		if seen || complete {
			require.Equal(t, want, i, "writer %s", e.TokenID)
		}
		next[e.TokenID] = i + 1
	}
}

// faultyFile fails writes while full is set, after writing part of the
// buffer, as a write(2) that runs out of space does; badTruncate makes
// cutting the partial line off fail too.
type faultyFile struct {
	*os.File
	mu          sync.Mutex
	full        bool
	badTruncate bool
	badSync     bool
}

func (f *faultyFile) set(fn func(f *faultyFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.badSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.badTruncate {
		return syscall.EIO
	}
	return f.File.Truncate(size)
}

// withFaultyFile makes l open its files as faultyFiles, returning the
// current one.
func withFaultyFile(t *testing.T, l *Log) func() *faultyFile {
	t.Helper()
	var mu sync.Mutex
	var cur *faultyFile
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open = func(path string) (file, int64, error) {
		f, size, err := openAppend(path)
		if err != nil {
			return nil, 0, err
		}
		mu.Lock()
		defer mu.Unlock()
		cur = &faultyFile{File: f.(*os.File)}
		return cur, size, nil
	}
	require.NoError(t, l.f.Close())
	l.f = nil
	require.NoError(t, l.openLocked())
	return func() *faultyFile {
		mu.Lock()
		defer mu.Unlock()
		return cur
	}
}

func TestWriteFailuresLoseNothing(t *testing.T) {
	cases := []struct {
		name    string
		fault   func(f *faultyFile)
		skipped int // fragments left in the file
	}{
		{name: "full disk", fault: func(f *faultyFile) { f.full = true }},
		// Each failed try (the Record, Ready, and the next Record's flush)
		// leaves a fragment, each on a line of its own.
		{name: "full disk, partial line cannot be cut", fault: func(f *faultyFile) { f.full, f.badTruncate = true, true }, skipped: 3},
		{name: "fsync fails", fault: func(f *faultyFile) { f.badSync = true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := openTest(t, Options{})
			current := withFaultyFile(t, l)
			ctx := context.Background()
			ev := func(obj string) Event { return Event{TokenID: "admin", Verb: "update", Object: obj} }
			require.NoError(t, l.Record(ctx, ev("before")))

			current().set(tc.fault)
			err := l.Record(ctx, ev("during-1"))
			require.Error(t, err)
			assert.True(t, errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO), err.Error())
			assert.Error(t, l.Ready(), "the log refuses while a line waits")
			assert.Error(t, l.Record(ctx, ev("during-2")))

			current().set(func(f *faultyFile) { f.full, f.badTruncate, f.badSync = false, false, false })
			require.NoError(t, l.Ready(), "the held lines are written once the disk takes them")
			require.NoError(t, l.Record(ctx, ev("after")))

			res, err := l.Read(Query{})
			require.NoError(t, err)
			assert.Equal(t, []string{"before", "during-1", "during-2", "after"}, objects(res.Events))
			assert.Equal(t, tc.skipped, res.Skipped)
			if tc.skipped == 0 {
				assert.Len(t, fileLines(t, dir), 4, "no fragment of a failed write is left")
			}
		})
	}
}

func TestPendingIsBounded(t *testing.T) {
	l, _ := openTest(t, Options{})
	current := withFaultyFile(t, l)
	current().set(func(f *faultyFile) { f.full = true })
	for range maxPending {
		require.Error(t, l.Record(context.Background(), Event{Verb: "update"}))
	}
	err := l.Record(context.Background(), Event{Verb: "update", Object: "dropped"})
	require.ErrorContains(t, err, "dropped")
	assert.Len(t, l.pending, maxPending)
}

func TestClose(t *testing.T) {
	l, _ := openTest(t, Options{})
	require.NoError(t, l.Close())
	assert.ErrorIs(t, l.Record(context.Background(), Event{}), ErrClosed)
	assert.ErrorIs(t, l.Ready(), ErrClosed)
	assert.NoError(t, l.Close(), "twice is fine")
}

func TestOpenValidates(t *testing.T) {
	for _, opts := range []Options{{MaxFiles: 1}, {MaxFileBytes: -1}} {
		_, err := Open(t.TempDir(), opts)
		assert.Error(t, err, "%+v", opts)
	}
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := Open(file, Options{})
	assert.Error(t, err, "a file is not a directory")
}
