package storetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

// The crash test runs a writer in a child process (the test binary again,
// told by an environment variable to be the writer), kills it, and checks
// the store. The workload lets the check see atomicity as well as
// durability: writer w's transaction i puts crash/w/a/i and crash/w/b/i and
// moves crash/w/count to i with a compare-and-swap, so afterwards, for every
// writer, exactly the pairs 1..count exist, each pair under one revision.

const (
	crashEnv     = "EBB_STORETEST_CRASH_CHILD"
	crashWriters = 4
	// crashMaxRun bounds a child left running by a parent that died.
	crashMaxRun = 60 * time.Second
)

// Ack is one transaction the child saw acknowledged.
type Ack struct {
	Writer, Seq int
	Rev         int64
}

// CrashChildArg reports whether this process is a crash-test child, and
// the argument its parent gave StartCrashChild. Call it from TestMain.
func CrashChildArg() (string, bool) { return os.LookupEnv(crashEnv) }

// RunCrashChild is the life of a crash-test child: it opens the store with
// open(arg) and runs the workload until killed, until a transaction fails
// (as when its server dies) or until crashMaxRun. It returns the exit code.
func RunCrashChild(open func(arg string) (store.Store, error)) int {
	arg, _ := CrashChildArg()
	s, err := open(arg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "crash child: open: %v\n", err)
		return 2
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxRun)
	defer cancel()
	out := &lineWriter{w: os.Stdout}
	errs := make(chan error, crashWriters)
	for w := range crashWriters {
		go func() { errs <- crashWrite(ctx, s, w, out) }()
	}
	code := 0
	for range crashWriters {
		if err := <-errs; err != nil && !errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
			code = 1
		}
	}
	return code
}

type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// printAck writes one line in one write call: a line in the pipe is an
// acknowledgement the parent may rely on, whenever the child dies.
func (l *lineWriter) printAck(a Ack) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := fmt.Fprintf(l.w, "ack %d %d %d\n", a.Writer, a.Seq, a.Rev)
	return err
}

func crashKey(w int, part string, i int) string { return fmt.Sprintf("crash/%d/%s/%08d", w, part, i) }
func crashCountKey(w int) string                { return fmt.Sprintf("crash/%d/count", w) }

func crashValue(w, i int, part string) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%d/%d/%s;", w, i, part)), 16)
}

func crashWrite(ctx context.Context, s store.Store, w int, out *lineWriter) error {
	seq, version := 0, store.MustNotExist
	kv, err := s.Get(ctx, crashCountKey(w))
	switch {
	case err == nil:
		if _, err := fmt.Sscan(string(kv.Value), &seq); err != nil {
			return fmt.Errorf("writer %d: bad count %q", w, kv.Value)
		}
		version = kv.Version
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("writer %d: read count: %w", w, err)
	}
	for ctx.Err() == nil {
		i := seq + 1
		rev, err := s.Txn(ctx,
			store.Put(crashKey(w, "a", i), crashValue(w, i, "a"), store.MustNotExist),
			store.Put(crashKey(w, "b", i), crashValue(w, i, "b"), store.MustNotExist),
			store.Put(crashCountKey(w), []byte(fmt.Sprint(i)), version),
		)
		if err != nil {
			return fmt.Errorf("writer %d txn %d: %w", w, i, err)
		}
		if err := out.printAck(Ack{w, i, rev}); err != nil {
			return err
		}
		seq, version = i, rev
	}
	return ctx.Err()
}

// CrashChild is a running crash-test child.
type CrashChild struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	acks   []Ack
	ackCh  chan struct{} // signalled on each ack
	exited chan struct{} // closed once stdout is drained and the child reaped
}

// StartCrashChild re-executes the test binary as a crash-test child, which
// the package's TestMain must hand to RunCrashChild. arg tells the child
// how to open the store. The child dies with the test at the latest.
func StartCrashChild(t *testing.T, arg string) *CrashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &CrashChild{cmd: cmd, ackCh: make(chan struct{}, 1), exited: make(chan struct{})}
	cmd.Stderr = &c.stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "start crash child")
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var a Ack
			if _, err := fmt.Sscanf(sc.Text(), "ack %d %d %d", &a.Writer, &a.Seq, &a.Rev); err != nil {
				continue // the test binary's own output
			}
			c.mu.Lock()
			c.acks = append(c.acks, a)
			c.mu.Unlock()
			select {
			case c.ackCh <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *CrashChild) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// WaitAcks waits until the child has acknowledged at least n transactions.
func (c *CrashChild) WaitAcks(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for c.count() < n {
		select {
		case <-c.ackCh:
		case <-c.exited:
			if c.count() < n {
				t.Fatalf("crash child exited after %d acks (%v): %s", c.count(), c.cmd.ProcessState, c.stderr.String())
			}
		case <-deadline:
			t.Fatalf("crash child: %d of %d acks before the timeout", c.count(), n)
		}
	}
}

// Kill kills the child with SIGKILL mid-burst and returns every
// acknowledgement it printed.
func (c *CrashChild) Kill(t *testing.T) []Ack {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	return c.Wait(t)
}

// Wait waits for the child to exit and returns every acknowledgement it
// printed.
func (c *CrashChild) Wait(t *testing.T) []Ack {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(waitTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Fatal("crash child did not exit")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Ack(nil), c.acks...)
}

// Stderr is what the child wrote to stderr, for failure messages.
func (c *CrashChild) Stderr() string { return c.stderr.String() }

// VerifyCrash checks a store reopened after a crash: every acknowledged
// transaction is there, whole, and nothing half-written is; the event log
// replays to exactly the stored state; new writes work. It needs the
// store's history to cover everything written (the default does).
func VerifyCrash(t *testing.T, s store.Store, acks []Ack) {
	t.Helper()
	ctx := context.Background()
	maxAcked := make(map[int]int)
	ackedRev := make(map[[2]int]int64)
	var newest int64
	for _, a := range acks {
		maxAcked[a.Writer] = max(maxAcked[a.Writer], a.Seq)
		ackedRev[[2]int{a.Writer, a.Seq}] = a.Rev
		newest = max(newest, a.Rev)
	}
	_, rev := mustList(t, s, "")
	require.GreaterOrEqual(t, rev, newest, "store revision is behind an acknowledged transaction")

	for w := range crashWriters {
		count := 0
		var countVersion int64
		kv, err := s.Get(ctx, crashCountKey(w))
		if !errors.Is(err, store.ErrNotFound) {
			require.NoError(t, err)
			_, err := fmt.Sscan(string(kv.Value), &count)
			require.NoError(t, err)
			countVersion = kv.Version
		}
		require.GreaterOrEqual(t, count, maxAcked[w], "writer %d: acknowledged transactions lost", w)
		as, _ := mustList(t, s, fmt.Sprintf("crash/%d/a/", w))
		bs, _ := mustList(t, s, fmt.Sprintf("crash/%d/b/", w))
		require.Len(t, as, count, "writer %d: a keys", w)
		require.Len(t, bs, count, "writer %d: b keys", w)
		for i := 1; i <= count; i++ {
			a, b := as[i-1], bs[i-1]
			require.Equal(t, crashKey(w, "a", i), a.Key)
			require.Equal(t, crashKey(w, "b", i), b.Key)
			require.Equal(t, crashValue(w, i, "a"), a.Value, a.Key)
			require.Equal(t, crashValue(w, i, "b"), b.Value, b.Key)
			require.Equal(t, a.Version, b.Version, "writer %d: txn %d split across revisions", w, i)
			if rev, ok := ackedRev[[2]int{w, i}]; ok {
				require.Equal(t, rev, a.Version, "writer %d: txn %d version", w, i)
			}
		}
		if count > 0 {
			require.Equal(t, as[count-1].Version, countVersion, "writer %d: count written apart from its keys", w)
		}
	}
	CheckLogMatchesState(t, s)
}

// CheckLogMatchesState replays the whole event log and compares it with a
// listing of the store, then writes a marker to show the store takes new
// writes and delivers them to watches.
func CheckLogMatchesState(t *testing.T, s store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kvs, rev := mustList(t, s, "")
	ch := mustWatch(t, ctx, s, "", 0)
	markerKey := fmt.Sprintf("marker/%d", time.Now().UnixNano())
	mrev := mustTxn(t, s, store.Put(markerKey, []byte("m"), store.MustNotExist))
	require.Equal(t, rev+1, mrev)

	state := map[string]store.KV{}
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		var ev store.WatchEvent
		select {
		case e, ok := <-ch:
			require.True(t, ok, "watch closed")
			ev = e
		case <-timer.C:
			t.Fatal("timed out replaying the event log")
		}
		require.NoError(t, ev.Err, "replaying the event log")
		if ev.KV.Key == markerKey {
			require.Equal(t, mrev, ev.KV.Version)
			break
		}
		require.LessOrEqual(t, ev.KV.Version, rev, "event %s beyond the listing", ev.KV.Key)
		applyEvent(state, ev.Event)
	}
	assert.Equal(t, normalizeMap(kvMap(kvs)), normalizeMap(state), "event log and state disagree")
	kv, err := s.Get(ctx, markerKey)
	require.NoError(t, err)
	require.Equal(t, mrev, kv.Version)
}
