package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/storetest"
)

// TestCrash kills a writing process mid-burst, three times over the same
// file, and checks after each that every acknowledged transaction is there
// whole, the file is consistent, and the store works.
func TestCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	var acks []storetest.Ack
	for round, killAfter := range []int{150, 400, 50} {
		child := storetest.StartCrashChild(t, path)
		child.WaitAcks(t, killAfter)
		got := child.Kill(t)
		require.GreaterOrEqual(t, len(got), killAfter)
		acks = append(acks, got...)
		t.Logf("round %d: killed after %d acks", round, len(got))

		checkBolt(t, path)
		s, err := embedded.Open(path, embedded.Options{})
		require.NoError(t, err)
		storetest.VerifyCrash(t, s, acks)
		require.NoError(t, s.Close())
	}
}

// checkBolt runs bbolt's own consistency check (page references, freelist,
// ordering) on the file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var problems []error
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() { // drain: the checker runs until it closes the channel
			problems = append(problems, err)
		}
		return nil
	}))
	require.Empty(t, problems, "bbolt consistency check")
}
