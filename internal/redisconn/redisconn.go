package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Placeholder is the password the shipped configs carry until an operator
// sets a real one.
const Placeholder = "CHANGE-ME"

// DefaultWaitTimeout bounds each WAIT when ?wait_replicas is set.
const DefaultWaitTimeout = 100 * time.Millisecond

// Target is a parsed Redis URL: where Redis is, and how writes are confirmed.
type Target struct {
	plain    *goredis.Options         // redis://, rediss://, unix://
	failover *goredis.FailoverOptions // redis-sentinel://

	// WaitReplicas is how many replicas must hold a write before it is
	// acknowledged; zero means asynchronous replication.
	WaitReplicas int
	// WaitTimeout bounds each WAIT.
	WaitTimeout time.Duration
}

// Parse reads a Redis URL in either form the package comment gives.
func Parse(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not err itself: url.Error repeats the URL, password and all.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return Target{}, fmt.Errorf("redis url: %w", err)
	}
	if u.Scheme != "redis-sentinel" && u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		return Target{}, fmt.Errorf("redis url: scheme %q: want redis, rediss, unix or redis-sentinel", u.Scheme)
	}
	q := u.Query()
	t := Target{WaitTimeout: DefaultWaitTimeout}
	if err := t.takeWait(q); err != nil {
		return Target{}, err
	}
	if u.Scheme == "redis-sentinel" {
		if err := t.parseSentinel(u, q); err != nil {
			return Target{}, err
		}
	} else {
		if len(q) > 0 {
			u.RawQuery = q.Encode()
		} else {
			u.RawQuery = ""
		}
		o, err := goredis.ParseURL(u.String())
		if err != nil {
			return Target{}, fmt.Errorf("redis url: %w", err)
		}
		t.plain = o
	}
	if t.password() == Placeholder {
		return Target{}, fmt.Errorf("redis url: the password is the placeholder %s from the shipped configs; set a real one", Placeholder)
	}
	return t, nil
}

// takeWait removes ebb's own query parameters, which go-redis would refuse.
func (t *Target) takeWait(q url.Values) error {
	if v := q.Get("wait_replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 16 {
			return fmt.Errorf("redis url: wait_replicas %q: want a whole number from 0 to 16", v)
		}
		t.WaitReplicas = n
	}
	if v := q.Get("wait_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Minute {
			return fmt.Errorf("redis url: wait_timeout %q: want a duration above 0 and at most 1m", v)
		}
		t.WaitTimeout = d
	}
	q.Del("wait_replicas")
	q.Del("wait_timeout")
	return nil
}

func (t *Target) parseSentinel(u *url.URL, q url.Values) error {
	f := &goredis.FailoverOptions{}
	for _, hp := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("redis-sentinel url: sentinel address %q: want host:port", hp)
		}
		f.SentinelAddrs = append(f.SentinelAddrs, hp)
	}
	parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	switch len(parts) {
	case 2:
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return fmt.Errorf("redis-sentinel url: database %q: want a whole number", parts[1])
		}
		f.DB = db
		fallthrough
	case 1:
		f.MasterName = parts[0]
	default:
		return errors.New("redis-sentinel url: want /master or /master/db after the sentinel addresses")
	}
	if u.User != nil {
		f.Username = u.User.Username()
		f.Password, _ = u.User.Password()
	}
	f.SentinelPassword = q.Get("sentinel_password")
	q.Del("sentinel_password")
	for k := range q {
		return fmt.Errorf("redis-sentinel url: unknown parameter %q", k)
	}
	t.failover = f
	return nil
}

func (t Target) password() string {
	if t.failover != nil {
		return t.failover.Password
	}
	return t.plain.Password
}

// Addr names the server for messages: the address, or the master's name and
// its sentinels.
func (t Target) Addr() string {
	if t.failover != nil {
		return fmt.Sprintf("master %s via sentinels %s", t.failover.MasterName, strings.Join(t.failover.SentinelAddrs, ","))
	}
	return t.plain.Addr
}

// NewClient makes a client with retries off. poolSize zero keeps go-redis's
// default; one gives a client of its own connection, as a blocking read
// needs.
func (t Target) NewClient(poolSize int) *goredis.Client {
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if t.failover != nil {
		f := *t.failover
		f.SentinelAddrs = append([]string(nil), f.SentinelAddrs...)
		f.MaxRetries = -1
		f.DisableIdentity = true
		if poolSize > 0 {
			f.PoolSize, f.MinIdleConns, f.MaxIdleConns = poolSize, 0, poolSize
		}
		return goredis.NewFailoverClient(&f)
	}
	o := *t.plain
	o.MaxRetries = -1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = noMaint
	if poolSize > 0 {
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = poolSize, 0, poolSize
	}
	return goredis.NewClient(&o)
}

// ErrUnreplicated says a write reached the primary but not the replicas
// ?wait_replicas asked for in time: it may or may not survive a failover,
// so the caller must treat its outcome as unknown.
var ErrUnreplicated = errors.New("write not confirmed by enough replicas")

// Confirmed runs write and, when the target asks for replicas, WAITs for
// them on the same connection, since WAIT counts that connection's writes.
func (t Target) Confirmed(ctx context.Context, c *goredis.Client, write func(goredis.Scripter) error) error {
	if t.WaitReplicas == 0 {
		return write(c)
	}
	cn := c.Conn()
	defer cn.Close()
	if err := write(cn); err != nil {
		return err
	}
	n, err := cn.Wait(ctx, t.WaitReplicas, t.WaitTimeout).Result()
	if err != nil {
		return fmt.Errorf("wait for %d replicas: %w", t.WaitReplicas, err)
	}
	if int(n) < t.WaitReplicas {
		return fmt.Errorf("%w: %d of %d within %s", ErrUnreplicated, n, t.WaitReplicas, t.WaitTimeout)
	}
	return nil
}

// LogTo sends go-redis's own messages (Sentinel naming a new primary, a
// connection pool's trouble) to log, instead of its default of stderr in
// another format. It sets a process-wide logger: call it once, from main.
func LogTo(log *slog.Logger) {
	goredis.SetLogger(slogPrinter{log.With("component", "redis")})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.InfoContext(ctx, fmt.Sprintf(format, v...))
}
