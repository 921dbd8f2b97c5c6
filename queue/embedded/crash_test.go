package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/embedded"
)

// The crash test runs a queue's producers and workers in a child process
// (the test binary again, told by crashEnv), SIGKILLs it mid-burst, and
// checks the file: everything the child saw acknowledged is there.

const (
	crashEnv      = "EBB_QUEUETEST_CRASH_CHILD"
	crashWorkers  = 4
	crashFunction = "crash/fn"
	crashMaxRun   = 60 * time.Second // a child whose parent died stops by then
	crashWait     = 30 * time.Second
)

// runCrashChild enqueues and delivers until killed, printing "enq ID" once
// an Enqueue returned and "fin ID" once a Finish did, each line in one
// write.
func runCrashChild(path string) int {
	q, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxRun)
	defer cancel()
	var mu sync.Mutex
	ack := func(kind, id string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "%s %s\n", kind, id)
	}
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Go(func() {
			worker := fmt.Sprintf("p%d-w%d", os.Getpid(), w)
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("%s-%06d", worker, i)
				now := time.Now()
				if _, _, err := q.Enqueue(ctx, api.Invocation{ID: id, Function: crashFunction, CreatedAt: now, MaxAttempts: 3,
					Request: api.InvocationRequest{Method: "POST", Path: "/", Body: []byte(id)}}); err != nil {
					return
				}
				ack("enq", id)
				inv, err := q.Claim(ctx, worker, now, time.Minute)
				if err != nil {
					continue
				}
				inv.Status, inv.CompletedAt, inv.UpdatedAt = api.InvocationSucceeded, now, now
				if err := q.Finish(ctx, inv); err != nil {
					continue
				}
				ack("fin", inv.ID)
			}
		})
	}
	wg.Wait()
	return 0
}

// crashRound starts a child on path, kills it after at least n acks, and
// returns the IDs it saw enqueued and finished.
func crashRound(t *testing.T, path string, n int) (enq, fin []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	record := func(line string) {
		kind, id, ok := strings.Cut(line, " ")
		switch {
		case ok && kind == "enq":
			enq = append(enq, id)
		case ok && kind == "fin":
			fin = append(fin, id)
		}
	}
	deadline := time.After(crashWait)
	for len(enq)+len(fin) < n {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "child exited early: %s", stderr.String())
			record(line)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("%d acks of %d before the deadline: %s", len(enq)+len(fin), n, stderr.String())
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	for line := range lines { // acks written before the kill still count
		record(line)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "child ended with %v", err)
	return enq, fin
}

// TestCrash kills a process enqueuing and delivering, three times over one
// file, and checks after each kill that every acknowledged Enqueue is
// there, every acknowledged Finish is final, the line holds exactly the
// rest, bbolt's check passes, and the rest can be delivered.
func TestCrash(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	var enq, fin []string
	for round, n := range []int{200, 500, 100} {
		e, f := crashRound(t, path, n)
		enq, fin = append(enq, e...), append(fin, f...)
		t.Logf("round %d: killed after %d enqueued, %d finished", round, len(e), len(f))

		checkBolt(t, path)
		q, err := embedded.Open(path, embedded.Options{})
		require.NoError(t, err)
		finished := map[string]bool{}
		for _, id := range fin {
			finished[id] = true
		}
		for _, id := range enq {
			inv, err := q.Get(ctx, crashFunction, id)
			require.NoError(t, err, "acknowledged enqueue %s lost", id)
			if finished[id] {
				assert.Equal(t, api.InvocationSucceeded, inv.Status, id)
			}
		}
		all, err := q.List(ctx, crashFunction, 0)
		require.NoError(t, err)
		live := 0
		for _, inv := range all {
			if !inv.Status.Final() {
				live++
			}
		}
		depth, err := q.Depth(ctx, crashFunction)
		require.NoError(t, err)
		assert.Equal(t, live, depth, "the line is the live invocations")
		require.NoError(t, q.Close())
	}

	// What the dead workers held is delivered once their claims lapse.
	q, err := embedded.Open(path, embedded.Options{})
	require.NoError(t, err)
	defer q.Close()
	later := time.Now().Add(time.Hour)
	for {
		inv, err := q.Claim(ctx, "survivor", later, time.Minute)
		if errors.Is(err, queue.ErrEmpty) {
			break
		}
		require.NoError(t, err)
		inv.Status, inv.CompletedAt, inv.UpdatedAt = api.InvocationSucceeded, later, later
		require.NoError(t, q.Finish(ctx, inv))
	}
	all, err := q.List(ctx, crashFunction, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(all), len(enq))
	for _, inv := range all {
		assert.Equal(t, api.InvocationSucceeded, inv.Status, inv.ID)
	}
}

// checkBolt runs bbolt's own consistency check on the file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var problems []error
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		return nil
	}))
	require.Empty(t, problems, "bbolt consistency check")
}
