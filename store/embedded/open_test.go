package embedded_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ebbrun/ebb/store/embedded"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts embedded.Options
		ok   bool
	}{
		{"zero", embedded.Options{}, true},
		{"set", embedded.Options{History: 10, LockTimeout: time.Second}, true},
		{"negative history", embedded.Options{History: -1}, false},
		{"negative timeout", embedded.Options{LockTimeout: -time.Second}, false},
	}
	for _, tc := range tests {
		err := tc.opts.Validate()
		if tc.ok {
			assert.NoError(t, err, tc.name)
		} else {
			assert.Error(t, err, tc.name)
		}
	}
	_, err := embedded.Open(filepath.Join(t.TempDir(), "x.db"), embedded.Options{History: -1})
	assert.Error(t, err)
}

// TestOpenLocked: a second process (here, handle) cannot open a file in use.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "ebb.db") // parents are created
	s, err := embedded.Open(path, embedded.Options{})
	require.NoError(t, err)
	defer s.Close()
	start := time.Now()
	_, err = embedded.Open(path, embedded.Options{LockTimeout: 50 * time.Millisecond})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestOpenRejectsUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ebb.db")
	s, err := embedded.Open(path, embedded.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("99"))
	}))
	require.NoError(t, db.Close())

	_, err = embedded.Open(path, embedded.Options{})
	assert.ErrorContains(t, err, "unsupported format")
}
