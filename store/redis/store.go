package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ebbrun/ebb/internal/redisconn"
	"github.com/ebbrun/ebb/store"
)

// Defaults for Options.
const (
	DefaultPrefix  = "ebb:"
	DefaultHistory = 100_000
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Prefix starts every Redis key the store uses, so several clusters can
	// share one Redis database. Empty means DefaultPrefix.
	Prefix string
	// History is about how many recent events the event stream keeps for
	// watches to resume from (XADD MAXLEN ~: at least this many, trimmed in
	// whole stream nodes). Zero means DefaultHistory.
	History int
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if o.History < 0 {
		return fmt.Errorf("history %d: must not be negative", o.History)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.History == 0 {
		o.History = DefaultHistory
	}
	return o
}

// Store is the Redis-backed store.Store.
type Store struct {
	client  *goredis.Client
	target  redisconn.Target // for each watch's own connection, and WAIT
	history string

	keys      []string // the script KEYS: see scripts.go
	keyRev    string
	keyEvents string
	keyShards string // + a shard: a node stream (shard.go)
	prefix    string // for the leases (lease.go)

	ctx       context.Context // cancelled by Close; ends watches
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// rediss://, unix:// or redis-sentinel://: see internal/redisconn) and
// checks that it answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("redis store options: %w", err)
	}
	opts = opts.withDefaults()
	target, err := redisconn.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	// Retries are off (redisconn): a command retried after a lost reply
	// could apply a transaction twice; callers see the error and decide.
	client := target.NewClient(0)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis store %s: %w", target.Addr(), err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	return &Store{
		client:  client,
		target:  target,
		history: strconv.Itoa(opts.History),
		keys: []string{
			opts.Prefix + "rev",
			opts.Prefix + "events",
			opts.Prefix + "keys",
			opts.Prefix + "values",
			opts.Prefix + "versions",
			opts.Prefix + "shard:",
			opts.Prefix + "shardlast",
		},
		keyRev:    opts.Prefix + "rev",
		keyEvents: opts.Prefix + "events",
		keyShards: opts.Prefix + "shard:",
		prefix:    opts.Prefix,
		ctx:       sctx,
		cancel:    cancel,
	}, nil
}

// Close closes the connections. Watches end with store.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if err := s.client.Close(); err != nil {
			s.closeErr = fmt.Errorf("close redis store: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) usable(ctx context.Context) error {
	if s.ctx.Err() != nil {
		return store.ErrClosed
	}
	return ctx.Err()
}

func (s *Store) mapErr(err error) error {
	if errors.Is(err, goredis.ErrClosed) || s.ctx.Err() != nil {
		return store.ErrClosed
	}
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.usable(ctx); err != nil {
		return store.KV{}, err
	}
	res, err := getScript.Run(ctx, s.client, s.keys, key).Slice()
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, s.mapErr(err))
	}
	if len(res) == 0 {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	v, ok1 := res[0].(string)
	version, ok2 := res[1].(int64)
	if len(res) != 2 || !ok1 || !ok2 {
		return store.KV{}, fmt.Errorf("get %q: malformed reply %v", key, res)
	}
	return store.KV{Key: key, Value: []byte(v), Version: version}, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	lo, hi := lexRange(prefix)
	res, err := listScript.Run(ctx, s.client, s.keys, lo, hi).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, s.mapErr(err))
	}
	kvs, rev, err := parseList(res)
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, err)
	}
	return kvs, rev, nil
}

func parseList(res []any) ([]store.KV, int64, error) {
	if len(res) != 4 {
		return nil, 0, fmt.Errorf("malformed reply of %d items", len(res))
	}
	rev, ok := res[0].(int64)
	keys, ok1 := res[1].([]any)
	vals, ok2 := res[2].([]any)
	vers, ok3 := res[3].([]any)
	if !ok || !ok1 || !ok2 || !ok3 || len(vals) != len(keys) || len(vers) != len(keys) {
		return nil, 0, fmt.Errorf("malformed reply")
	}
	if len(keys) == 0 {
		return nil, rev, nil
	}
	kvs := make([]store.KV, len(keys))
	for i := range keys {
		k, ok1 := keys[i].(string)
		v, ok2 := vals[i].(string)
		ver, ok3 := vers[i].(int64)
		if !ok1 || !ok2 || !ok3 || ver <= 0 {
			return nil, 0, fmt.Errorf("malformed entry %v %v %v", keys[i], vals[i], vers[i])
		}
		kvs[i] = store.KV{Key: k, Value: []byte(v), Version: ver}
	}
	return kvs, rev, nil
}

// lexRange returns the ZRANGEBYLEX bounds of the keys starting with prefix.
func lexRange(prefix string) (lo, hi string) {
	if prefix == "" {
		return "-", "+"
	}
	end := []byte(prefix)
	for len(end) > 0 && end[len(end)-1] == 0xff {
		end = end[:len(end)-1]
	}
	if len(end) == 0 {
		return "[" + prefix, "+"
	}
	end[len(end)-1]++
	return "[" + prefix, "(" + string(end)
}

// Txn implements store.Store. If the connection fails while the script
// runs, the error does not say whether it applied, as with any remote store.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if err := store.ValidateOps(ops, 0); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	args := make([]any, 1, 1+5*len(ops))
	args[0] = s.history
	for _, op := range ops {
		args = append(args, opCode(op.Kind), op.Version, op.Key, op.Value, shardOf(op.Key))
	}
	var res []int64
	err := s.target.Confirmed(ctx, s.client, func(c goredis.Scripter) error {
		var err error
		res, err = txnScript.Run(ctx, c, s.keys, args...).Int64Slice()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("txn: %w", s.mapErr(err))
	}
	switch {
	case len(res) == 2 && res[0] == 1:
		return res[1], nil
	case len(res) == 3 && res[0] == 0 && res[1] >= 1 && int(res[1]) <= len(ops):
		return 0, fmt.Errorf("txn: %w", store.ConflictError(ops[res[1]-1], res[2]))
	default:
		return 0, fmt.Errorf("txn: malformed reply %v", res)
	}
}

func opCode(k store.OpKind) string {
	switch k {
	case store.OpPut:
		return "p"
	case store.OpDelete:
		return "d"
	default:
		return "c"
	}
}
