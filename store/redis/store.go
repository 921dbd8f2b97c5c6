package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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
	client    *goredis.Client
	watchOpts goredis.Options // for each watch's own connection
	history   string

	keyRev, keyEvents, keyIndex, kvPrefix string

	ctx       context.Context // cancelled by Close; ends watches
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// rediss:// or unix://) and checks that it answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("redis store options: %w", err)
	}
	opts = opts.withDefaults()
	ro, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis store url: %w", err)
	}
	// A command retried after a lost reply could apply a transaction twice;
	// callers see the error and decide.
	ro.MaxRetries = -1
	ro.DisableIdentity = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	wo := *ro
	wo.PoolSize = 1
	wo.MinIdleConns = 0
	wo.MaxIdleConns = 1

	client := goredis.NewClient(ro)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis store %s: %w", ro.Addr, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	return &Store{
		client:    client,
		watchOpts: wo,
		history:   strconv.Itoa(opts.History),
		keyRev:    opts.Prefix + "rev",
		keyEvents: opts.Prefix + "events",
		keyIndex:  opts.Prefix + "keys",
		kvPrefix:  opts.Prefix + "kv:",
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
	vals, err := s.client.HMGet(ctx, s.kvPrefix+key, "v", "r").Result()
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, s.mapErr(err))
	}
	if vals[1] == nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	v, _ := vals[0].(string)
	r, _ := vals[1].(string)
	version, err := strconv.ParseInt(r, 10, 64)
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: bad version %q", key, r)
	}
	return store.KV{Key: key, Value: []byte(v), Version: version}, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	lo, hi := lexRange(prefix)
	res, err := listScript.Run(ctx, s.client, []string{s.keyIndex, s.keyRev}, lo, hi, s.kvPrefix).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, s.mapErr(err))
	}
	if len(res) == 0 || (len(res)-1)%3 != 0 {
		return nil, 0, fmt.Errorf("list %q: malformed reply of %d items", prefix, len(res))
	}
	rev, ok := res[0].(int64)
	if !ok {
		return nil, 0, fmt.Errorf("list %q: malformed revision %v", prefix, res[0])
	}
	var kvs []store.KV
	if n := (len(res) - 1) / 3; n > 0 {
		kvs = make([]store.KV, 0, n)
	}
	for i := 1; i < len(res); i += 3 {
		k, ok1 := res[i].(string)
		v, ok2 := res[i+1].(string)
		ver, ok3 := res[i+2].(int64)
		if !ok1 || !ok2 || !ok3 {
			return nil, 0, fmt.Errorf("list %q: malformed entry %v %v %v", prefix, res[i], res[i+1], res[i+2])
		}
		kvs = append(kvs, store.KV{Key: k, Value: []byte(v), Version: ver})
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
	if err := validateOps(ops); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	keys := make([]string, 3, 3+len(ops))
	keys[0], keys[1], keys[2] = s.keyRev, s.keyEvents, s.keyIndex
	args := make([]any, 1, 1+4*len(ops))
	args[0] = s.history
	for _, op := range ops {
		keys = append(keys, s.kvPrefix+op.Key)
		args = append(args, opCode(op.Kind), op.Version, op.Key, op.Value)
	}
	res, err := txnScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("txn: %w", s.mapErr(err))
	}
	switch {
	case len(res) == 2 && res[0] == 1:
		return res[1], nil
	case len(res) == 3 && res[0] == 0 && res[1] >= 1 && int(res[1]) <= len(ops):
		return 0, fmt.Errorf("txn: %w", conflictError(ops[res[1]-1], res[2]))
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
