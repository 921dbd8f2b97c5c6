package boltfile

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestInitChecksTheFormat(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "f.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Init(tx, "1", []byte("kv")) }))
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Init(tx, "1", []byte("kv")) }), "the same format opens again")
	err = db.Update(func(tx *bolt.Tx) error { return Init(tx, "2") })
	assert.ErrorContains(t, err, `unsupported format "1" (want "2")`)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.NotNil(t, tx.Bucket([]byte("kv")))
		return nil
	}))
}

// Requests waiting while a commit runs share the next one, never more
// than maxBatch at a time, and every request is committed once, in order.
func TestGroupCommitBatches(t *testing.T) {
	requests := make(chan int)
	done := make(chan struct{})
	release := make(chan struct{})
	var batches [][]int
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		GroupCommit(done, requests, 3, func(b []int) {
			batches = append(batches, append([]int(nil), b...))
			if len(batches) == 1 {
				<-release // the first commit is slow: the others queue up
			}
		})
	}()
	requests <- 0
	var wg sync.WaitGroup
	for i := 1; i <= 5; i++ {
		wg.Go(func() { requests <- i })
	}
	close(release)
	wg.Wait()
	close(done)
	<-loopDone
	var all []int
	for _, b := range batches {
		assert.LessOrEqual(t, len(b), 3)
		all = append(all, b...)
	}
	assert.ElementsMatch(t, []int{0, 1, 2, 3, 4, 5}, all)
	assert.Equal(t, []int{0}, batches[0])
}
