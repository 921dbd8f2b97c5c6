package redis

import (
	"fmt"

	"github.com/ebbrun/ebb/store"
)

// validateOps rejects transactions that are malformed rather than in
// conflict: the caller has a bug, and retrying will not help. A key may be
// written at most once per transaction, so the outcome never depends on op
// order; checks may repeat a written key.
func validateOps(ops []store.Op) error {
	var written map[string]struct{}
	for i, op := range ops {
		if op.Key == "" {
			return fmt.Errorf("op %d: empty key", i)
		}
		if op.Version < store.AnyVersion {
			return fmt.Errorf("op %d on %q: invalid version %d", i, op.Key, op.Version)
		}
		switch op.Kind {
		case store.OpCheck:
			continue
		case store.OpPut, store.OpDelete:
		default:
			return fmt.Errorf("op %d on %q: unknown kind %d", i, op.Key, op.Kind)
		}
		if writtenBefore(ops, i, &written) {
			return fmt.Errorf("op %d: key %q written twice in one transaction", i, op.Key)
		}
	}
	return nil
}

// writtenBefore reports whether a write op before i has ops[i]'s key. Small
// transactions, the common case, are scanned without allocating.
func writtenBefore(ops []store.Op, i int, seen *map[string]struct{}) bool {
	const scanLimit = 16
	if len(ops) <= scanLimit {
		for _, prev := range ops[:i] {
			if prev.Kind != store.OpCheck && prev.Key == ops[i].Key {
				return true
			}
		}
		return false
	}
	if *seen == nil {
		*seen = make(map[string]struct{}, len(ops))
	}
	if _, dup := (*seen)[ops[i].Key]; dup {
		return true
	}
	(*seen)[ops[i].Key] = struct{}{}
	return false
}

func conflictError(op store.Op, have int64) error {
	return fmt.Errorf("%s %q: want version %d, have %d: %w", opName(op.Kind), op.Key, op.Version, have, store.ErrConflict)
}

func opName(k store.OpKind) string {
	switch k {
	case store.OpPut:
		return "put"
	case store.OpDelete:
		return "delete"
	default:
		return "check"
	}
}
