package invoker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/callbackurl"
)

// Config configures a Worker. Zero fields take the documented defaults.
type Config struct {
	// RouterURL is where deliveries go: the router's address, as
	// http://host:port. Default "http://127.0.0.1:8080".
	RouterURL string
	// Domain is the router's routing domain: a delivery's Host is
	// {fn}.{Domain}, or {fn}.{ns}.{Domain} outside the default namespace.
	// Default "localhost".
	Domain string
	// Name names this worker in the claims it takes. Default
	// "{hostname}/invoker".
	Name string
	// Concurrency is how many deliveries the worker has in flight at
	// once, over all functions. Default 16.
	Concurrency int
	// VisibilityMargin is added to a function's timeout for the claim's
	// visibility and the delivery's own deadline: the router answers 504
	// at the function's timeout, so the margin covers queueing in the
	// activator and the outcome's write. Default 30s.
	VisibilityMargin time.Duration
	// PollInterval is how long a delivery slot waits before claiming
	// again when nothing was due. Default 200ms.
	PollInterval time.Duration
	// BackoffBase and BackoffCap shape the wait before a retry: attempt n
	// waits a uniformly random time up to min(BackoffCap,
	// BackoffBase*2^(n-1)) (exponential backoff with full jitter).
	// Defaults 1s and 5m.
	BackoffBase time.Duration
	BackoffCap  time.Duration
	// CallbackAttempts is how many times a callback is POSTed before it
	// is given up, CallbackTimeout bounds each. Defaults 3 and 10s.
	CallbackAttempts int
	CallbackTimeout  time.Duration
	// CallbackPolicy is where callbacks may go. The zero policy allows
	// public addresses only: never link-local (cloud metadata),
	// unspecified or multicast ones, and loopback or private ones only in
	// its Allow ranges. Every address dialed is checked, so a name that
	// resolves elsewhere than at submit cannot get around it.
	CallbackPolicy callbackurl.Policy
	// Retention is how long a finished invocation is kept; ExpireInterval
	// is how often the old ones are deleted. Defaults
	// api.DefaultInvocationRetention and 1m.
	Retention      time.Duration
	ExpireInterval time.Duration
}

// Defaults for Config.
const (
	DefaultRouterURL        = "http://127.0.0.1:8080"
	DefaultDomain           = "localhost"
	DefaultConcurrency      = 16
	DefaultVisibilityMargin = 30 * time.Second
	DefaultPollInterval     = 200 * time.Millisecond
	DefaultBackoffBase      = time.Second
	DefaultBackoffCap       = 5 * time.Minute
	DefaultCallbackAttempts = 3
	DefaultCallbackTimeout  = 10 * time.Second
	DefaultExpireInterval   = time.Minute
)

func (c Config) withDefaults() Config {
	if c.RouterURL == "" {
		c.RouterURL = DefaultRouterURL
	}
	c.RouterURL = strings.TrimSuffix(c.RouterURL, "/")
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = host + "/invoker"
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.VisibilityMargin == 0 {
		c.VisibilityMargin = DefaultVisibilityMargin
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffCap == 0 {
		c.BackoffCap = DefaultBackoffCap
	}
	if c.CallbackAttempts == 0 {
		c.CallbackAttempts = DefaultCallbackAttempts
	}
	if c.CallbackTimeout == 0 {
		c.CallbackTimeout = DefaultCallbackTimeout
	}
	if c.Retention == 0 {
		c.Retention = api.DefaultInvocationRetention
	}
	if c.ExpireInterval == 0 {
		c.ExpireInterval = DefaultExpireInterval
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	d := c.withDefaults()
	u, err := url.Parse(d.RouterURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("invoker: RouterURL %q must be http(s)://host[:port]", c.RouterURL)
	}
	for _, label := range strings.Split(d.Domain, ".") {
		if err := api.ValidateName("domain", label); err != nil {
			return fmt.Errorf("invoker: domain %q: %w", d.Domain, err)
		}
	}
	switch {
	case c.Concurrency < 0 || c.Concurrency > 4096:
		return errors.New("invoker: Concurrency must be within 0-4096")
	case c.VisibilityMargin < 0 || c.PollInterval < 0 || c.CallbackTimeout < 0 || c.Retention < 0 || c.ExpireInterval < 0:
		return errors.New("invoker: durations must not be negative")
	case c.BackoffBase < 0 || d.BackoffCap < d.BackoffBase:
		return errors.New("invoker: need 0 < BackoffBase <= BackoffCap")
	case c.CallbackAttempts < 0 || c.CallbackAttempts > 20:
		return errors.New("invoker: CallbackAttempts must be within 0-20")
	}
	return nil
}

// RouterURLFor is Config.RouterURL for a router listening at listen
// (host:port, as ebbd's --http-addr): the same port, on loopback when the
// router listens on every address.
func RouterURLFor(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("invoker: router address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
