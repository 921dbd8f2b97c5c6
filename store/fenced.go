package store

import (
	"context"
	"fmt"
)

// Fenced returns s with every Txn also checking that key is still at
// version: a fencing token. A leader writes its leadership record once when
// it takes the lead and runs its loops over Fenced(s, record, version); once
// another leader has rewritten the record, every write of the deposed one
// fails with ErrConflict in the store itself, whatever its clock or its
// loops believe. Reads and watches pass through unfenced. Close does not
// close s, which the caller still owns.
func Fenced(s Store, key string, version int64) Store {
	return fenced{Store: s, key: key, version: version}
}

type fenced struct {
	Store
	key     string
	version int64
}

func (f fenced) Txn(ctx context.Context, ops ...Op) (int64, error) {
	fencedOps := make([]Op, 0, len(ops)+1)
	fencedOps = append(fencedOps, ops...)
	fencedOps = append(fencedOps, Check(f.key, f.version))
	rev, err := f.Store.Txn(ctx, fencedOps...)
	if err != nil {
		return 0, fmt.Errorf("fenced by %s@%d: %w", f.key, f.version, err)
	}
	return rev, nil
}

func (f fenced) Close() error { return nil }
