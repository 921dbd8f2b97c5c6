package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/redisconn"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/internal/record"
)

// DefaultPrefix is Options.Prefix when empty. It differs from the store's
// ("ebb:"), so both can share one Redis database.
const DefaultPrefix = "ebb:queue:"

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Prefix starts every Redis key the queue uses. Empty means
	// DefaultPrefix.
	Prefix string
	// Retention is how long an idempotency key outlives the last change
	// to its invocation (its TTL), should Expire not remove it first.
	// Zero means api.DefaultInvocationRetention.
	Retention time.Duration
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if o.Retention < 0 {
		return fmt.Errorf("retention %s: must not be negative", o.Retention)
	}
	return nil
}

// batch bounds the invocations one Expire or DeleteFunction script
// deletes: Redis serves nobody else while a script runs.
const batch = 500

var errClosed = errors.New("queue: closed")

// Queue is the Redis-backed queue.Queue.
type Queue struct {
	client      *goredis.Client
	target      redisconn.Target // for WAIT on acknowledged writes
	prefix      string
	retentionMS string

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ queue.Queue = (*Queue)(nil)

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// rediss://, unix:// or redis-sentinel://: see internal/redisconn) and
// checks that it answers.
func Open(ctx context.Context, url string, opts Options) (*Queue, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("redis queue options: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Retention == 0 {
		opts.Retention = api.DefaultInvocationRetention
	}
	target, err := redisconn.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("redis queue: %w", err)
	}
	// As in store/redis, retries are off: a script retried after a lost
	// reply could apply twice (claim an invocation twice); callers see the
	// error instead.
	client := target.NewClient(0)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis queue %s: %w", target.Addr(), err)
	}
	return &Queue{
		client:      client,
		target:      target,
		prefix:      opts.Prefix,
		retentionMS: strconv.FormatInt(max(opts.Retention.Milliseconds(), 1), 10),
		closed:      make(chan struct{}),
	}, nil
}

// Close closes the connections; later calls fail.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.closed)
		if err := q.client.Close(); err != nil {
			q.closeErr = fmt.Errorf("close redis queue: %w", err)
		}
	})
	return q.closeErr
}

func (q *Queue) usable(ctx context.Context) error {
	select {
	case <-q.closed:
		return errClosed
	default:
	}
	return ctx.Err()
}

func (q *Queue) mapErr(err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return errClosed
	}
	return err
}

func (q *Queue) key(parts ...string) string {
	k := q.prefix
	for _, p := range parts {
		k += p
	}
	return k
}

func (q *Queue) idemKey(fn, key string) string { return q.key("idem:", fn, "\x00", key) }

// Scores are microseconds: a double holds them exactly. A due time rounds
// up and now rounds down, so nothing is claimed early (at most 1µs late);
// Expire's bound rounds down too, so nothing expires early.
func floorMicro(t time.Time) int64 { return t.UnixMicro() }

func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.After(time.UnixMicro(us)) {
		us++
	}
	return us
}

func score(us int64) string { return strconv.FormatInt(us, 10) }

func stamp(t time.Time) string { return t.Format(time.RFC3339Nano) }

// decode rebuilds an invocation from its hash: rec, with the claim fields
// the scripts keep current laid over it.
func decode(reply any) (api.Invocation, error) {
	fields, ok := reply.([]any)
	if !ok || len(fields)%2 != 0 {
		return api.Invocation{}, fmt.Errorf("malformed invocation reply %v", reply)
	}
	h := make(map[string]string, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		k, ok1 := fields[i].(string)
		v, ok2 := fields[i+1].(string)
		if !ok1 || !ok2 {
			return api.Invocation{}, fmt.Errorf("malformed invocation field %v", fields[i])
		}
		h[k] = v
	}
	return decodeHash(h)
}

func decodeHash(h map[string]string) (api.Invocation, error) {
	inv, err := record.Unmarshal([]byte(h["rec"]))
	if err != nil {
		return api.Invocation{}, err
	}
	inv.Status = api.InvocationStatus(h["status"])
	if inv.Attempts, err = strconv.Atoi(h["attempts"]); err != nil {
		return api.Invocation{}, fmt.Errorf("invocation %s attempts: %w", inv.ID, err)
	}
	inv.ClaimedBy = h["by"]
	inv.ClaimedUntil = time.Time{}
	if u := h["until"]; u != "" {
		if inv.ClaimedUntil, err = time.Parse(time.RFC3339Nano, u); err != nil {
			return api.Invocation{}, fmt.Errorf("invocation %s claimedUntil: %w", inv.ID, err)
		}
	}
	if inv.UpdatedAt, err = time.Parse(time.RFC3339Nano, h["updated"]); err != nil {
		return api.Invocation{}, fmt.Errorf("invocation %s updatedAt: %w", inv.ID, err)
	}
	return inv, nil
}

// Enqueue implements queue.Queue.
func (q *Queue) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	inv, err := record.ForEnqueue(inv)
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("enqueue: %w", err)
	}
	if err := q.usable(ctx); err != nil {
		return api.Invocation{}, false, err
	}
	rec, err := record.Marshal(inv)
	if err != nil {
		return api.Invocation{}, false, err
	}
	ik := ""
	if inv.IdempotencyKey != "" {
		ik = q.idemKey(inv.Function, inv.IdempotencyKey)
	}
	due, _ := record.Due(inv)
	var res []any
	err = q.target.Confirmed(ctx, q.client, func(c goredis.Scripter) error {
		var err error
		res, err = enqueueScript.Run(ctx, c, nil, q.prefix, inv.ID, inv.Function, ik, q.retentionMS,
			rec, stamp(inv.UpdatedAt), score(ceilMicro(due)), score(floorMicro(inv.CreatedAt))).Slice()
		return err
	})
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("enqueue %s: %w", inv.ID, q.mapErr(err))
	}
	code, _ := res[0].(int64)
	switch {
	case code == 0 && len(res) == 1:
		return inv, false, nil
	case code == 1 && len(res) == 2:
		old, err := decode(res[1])
		if err != nil {
			return api.Invocation{}, false, fmt.Errorf("enqueue %s: %w", inv.ID, err)
		}
		return old, true, nil
	case code == 2 && len(res) == 2:
		return api.Invocation{}, false, fmt.Errorf("enqueue %s: id taken by function %v", inv.ID, res[1])
	}
	return api.Invocation{}, false, fmt.Errorf("enqueue %s: malformed reply %v", inv.ID, res)
}

// Claim implements queue.Queue.
func (q *Queue) Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	if err := record.CheckClaim(worker, visibility, functions); err != nil {
		return api.Invocation{}, err
	}
	if err := q.usable(ctx); err != nil {
		return api.Invocation{}, err
	}
	until := now.Add(visibility)
	args := make([]any, 0, 6+len(functions))
	args = append(args, q.prefix, score(floorMicro(now)), worker, stamp(until),
		score(ceilMicro(until.Add(time.Nanosecond))), stamp(now))
	for _, fn := range functions {
		args = append(args, fn)
	}
	res, err := claimScript.Run(ctx, q.client, nil, args...).Result()
	if errors.Is(err, goredis.Nil) {
		return api.Invocation{}, queue.ErrEmpty
	}
	if err != nil {
		return api.Invocation{}, fmt.Errorf("claim: %w", q.mapErr(err))
	}
	inv, err := decode(res)
	if err != nil {
		return api.Invocation{}, fmt.Errorf("claim: %w", err)
	}
	return inv, nil
}

// Finish implements queue.Queue.
func (q *Queue) Finish(ctx context.Context, inv api.Invocation) error {
	worker, attempts := inv.ClaimedBy, inv.Attempts
	inv, err := record.ForFinish(inv)
	if err != nil {
		return err
	}
	if err := q.usable(ctx); err != nil {
		return err
	}
	rec, err := record.Marshal(inv)
	if err != nil {
		return err
	}
	dueScore, doneScore := "", ""
	if due, ok := record.Due(inv); ok {
		dueScore = score(ceilMicro(due))
	} else {
		doneScore = score(floorMicro(inv.CompletedAt))
	}
	var ok int
	err = q.target.Confirmed(ctx, q.client, func(c goredis.Scripter) error {
		var err error
		ok, err = finishScript.Run(ctx, c, nil, q.prefix, inv.ID, inv.Function, worker, strconv.Itoa(attempts),
			string(inv.Status), rec, stamp(inv.UpdatedAt), dueScore, doneScore, q.retentionMS).Int()
		return err
	})
	if err != nil {
		return fmt.Errorf("finish %s: %w", inv.ID, q.mapErr(err))
	}
	if ok != 1 {
		return fmt.Errorf("finish %s: %w", inv.ID, queue.ErrClaimLost)
	}
	return nil
}

// Update implements queue.Queue. Only Update changes a final invocation,
// so reading it first and writing the merged record is safe from all but
// a concurrent Update of the same one (the last wins).
func (q *Queue) Update(ctx context.Context, inv api.Invocation) error {
	old, err := q.Get(ctx, inv.Function, inv.ID)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	upd, err := record.Update(old, inv)
	if err != nil {
		return err
	}
	rec, err := record.Marshal(upd)
	if err != nil {
		return err
	}
	code, err := updateScript.Run(ctx, q.client, nil, q.prefix, upd.ID, upd.Function, rec, stamp(upd.UpdatedAt)).Int()
	switch {
	case err != nil:
		return fmt.Errorf("update %s: %w", inv.ID, q.mapErr(err))
	case code == 0:
		return fmt.Errorf("update %s: %w", inv.ID, queue.ErrNotFound)
	case code == 2:
		return fmt.Errorf("update %s: no longer final", inv.ID)
	}
	return nil
}

// Get implements queue.Queue.
func (q *Queue) Get(ctx context.Context, function, id string) (api.Invocation, error) {
	if err := q.usable(ctx); err != nil {
		return api.Invocation{}, err
	}
	h, err := q.client.HGetAll(ctx, q.key("i:", id)).Result()
	if err != nil {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, q.mapErr(err))
	}
	if len(h) == 0 || h["fn"] != function {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, queue.ErrNotFound)
	}
	inv, err := decodeHash(h)
	if err != nil {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, err)
	}
	return inv, nil
}

// List implements queue.Queue: the IDs newest first, then their records in
// one pipeline. One expired in between is left out.
func (q *Queue) List(ctx context.Context, function string, limit int) ([]api.Invocation, error) {
	if err := q.usable(ctx); err != nil {
		return nil, err
	}
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	ids, err := q.client.ZRevRange(ctx, q.key("fn:", function), 0, stop).Result()
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", function, q.mapErr(err))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.MapStringStringCmd, len(ids))
	_, err = q.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, q.key("i:", id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", function, q.mapErr(err))
	}
	out := make([]api.Invocation, 0, len(ids))
	for _, c := range cmds {
		h := c.Val()
		if len(h) == 0 || h["fn"] != function {
			continue
		}
		inv, err := decodeHash(h)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", function, err)
		}
		out = append(out, inv)
	}
	return out, nil
}

// Depth implements queue.Queue: the size of the function's line.
func (q *Queue) Depth(ctx context.Context, function string) (int, error) {
	if err := q.usable(ctx); err != nil {
		return 0, err
	}
	n, err := q.client.ZCard(ctx, q.key("due:", function)).Result()
	if err != nil {
		return 0, fmt.Errorf("depth %s: %w", function, q.mapErr(err))
	}
	return int(n), nil
}

// Expire implements queue.Queue, batch invocations per script.
func (q *Queue) Expire(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		if err := q.usable(ctx); err != nil {
			return total, err
		}
		n, err := expireScript.Run(ctx, q.client, nil, q.prefix, score(floorMicro(before)), batch).Int()
		total += n
		if err != nil {
			return total, fmt.Errorf("expire: %w", q.mapErr(err))
		}
		if n < batch {
			return total, nil
		}
	}
}

// DeleteFunction implements queue.Queue, batch invocations per script.
func (q *Queue) DeleteFunction(ctx context.Context, function string) error {
	for {
		if err := q.usable(ctx); err != nil {
			return err
		}
		n, err := deleteFunctionScript.Run(ctx, q.client, nil, q.prefix, function, batch).Int()
		if err != nil {
			return fmt.Errorf("delete function %s: %w", function, q.mapErr(err))
		}
		if n < batch {
			return nil
		}
	}
}
