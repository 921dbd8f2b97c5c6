package store

import "fmt"

// ValidateOps rejects transactions that are malformed rather than in
// conflict: the caller has a bug, and retrying will not help. A key may be
// written at most once per transaction, so the outcome never depends on op
// order; checks may repeat a written key. maxKeySize bounds key length; 0
// means no bound. Implementations call it before touching their storage.
func ValidateOps(ops []Op, maxKeySize int) error {
	var written map[string]struct{}
	for i, op := range ops {
		if op.Key == "" {
			return fmt.Errorf("op %d: empty key", i)
		}
		if maxKeySize > 0 && len(op.Key) > maxKeySize {
			return fmt.Errorf("op %d: key of %d bytes exceeds %d", i, len(op.Key), maxKeySize)
		}
		if op.Version < AnyVersion {
			return fmt.Errorf("op %d on %q: invalid version %d", i, op.Key, op.Version)
		}
		switch op.Kind {
		case OpCheck:
			continue
		case OpPut, OpDelete:
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
func writtenBefore(ops []Op, i int, seen *map[string]struct{}) bool {
	const scanLimit = 16
	if len(ops) <= scanLimit {
		for _, prev := range ops[:i] {
			if prev.Kind != OpCheck && prev.Key == ops[i].Key {
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

// ConflictError is the error a failed version check returns: it names the
// op and both versions and wraps ErrConflict.
func ConflictError(op Op, have int64) error {
	return fmt.Errorf("%s %q: want version %d, have %d: %w", op.Kind, op.Key, op.Version, have, ErrConflict)
}

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	default:
		return "check"
	}
}
