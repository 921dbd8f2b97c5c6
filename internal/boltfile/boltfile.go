package boltfile

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// metaBucket and formatKey hold a file's format version.
var (
	metaBucket = []byte("meta")
	formatKey  = []byte("format")
)

// Init creates the meta bucket and buckets if missing, and records
// version as the file's format, or checks the one recorded: a file of
// another format is refused rather than misread.
func Init(tx *bolt.Tx, version string, buckets ...[]byte) error {
	for _, name := range append([][]byte{metaBucket}, buckets...) {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(metaBucket)
	switch f := meta.Get(formatKey); {
	case f == nil:
		return meta.Put(formatKey, []byte(version))
	case string(f) != version:
		return fmt.Errorf("unsupported format %q (want %q)", f, version)
	}
	return nil
}

// GroupCommit runs the writer until done closes: it takes one request,
// then every request already waiting (up to maxBatch), and hands them to
// commit together, so that writers arriving while a commit's fsync runs
// share the next one. commit owns the batch only until it returns.
func GroupCommit[R any](done <-chan struct{}, requests <-chan R, maxBatch int, commit func(batch []R)) {
	batch := make([]R, 0, maxBatch)
	for {
		select {
		case <-done:
			return
		case r := <-requests:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-requests:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		commit(batch)
		clear(batch)
	}
}
