package activator

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ebbrun/ebb/internal/exchange"
	"github.com/ebbrun/ebb/internal/proxy"
)

// Config configures an Activator. Zero fields take the documented defaults.
type Config struct {
	// MaxQueue bounds the requests buffered per revision. Default 10000.
	MaxQueue int
	// RetryAfter is the Retry-After sent with a 503 for a full queue, or
	// for a revision at zero whose activation failed.
	// Default 1s.
	RetryAfter time.Duration
	// MaxRetries is how many other free replicas a released request tries
	// after the replica it was sent to took no byte of it; a request that
	// reached a replica is never sent again (see internal/exchange). At
	// most 16. Default exchange.DefaultMaxRetries (2), as the router's.
	MaxRetries int
	// ActivateTimeout bounds one call to ScaleUpper. Default 5s.
	ActivateTimeout time.Duration
	// ReactivateAfter re-pokes the autoscaler while requests keep waiting
	// for a revision that has no replica. Default 2s.
	ReactivateAfter time.Duration
	// IdleForget drops the state of a revision unused this long. Default 1m.
	IdleForget time.Duration
	// Reporter names this activator in its stats. Default "{hostname}/activator".
	Reporter string
	// StatsInterval is how often stats are reported. Default 1s.
	StatsInterval time.Duration
	// SampleInterval is how often concurrency is sampled. Default 10ms.
	SampleInterval time.Duration
	// Proxy configures upstream connections when the activator builds its
	// own replica registry (Deps.Replicas nil).
	Proxy proxy.Config
}

// Defaults for Config.
const (
	DefaultMaxQueue        = 10000
	DefaultRetryAfter      = time.Second
	DefaultMaxRetries      = exchange.DefaultMaxRetries
	DefaultActivateTimeout = 5 * time.Second
	DefaultReactivateAfter = 2 * time.Second
	DefaultIdleForget      = time.Minute
	DefaultStatsInterval   = time.Second
	DefaultSampleInterval  = 10 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.ActivateTimeout == 0 {
		c.ActivateTimeout = DefaultActivateTimeout
	}
	if c.ReactivateAfter == 0 {
		c.ReactivateAfter = DefaultReactivateAfter
	}
	if c.IdleForget == 0 {
		c.IdleForget = DefaultIdleForget
	}
	if c.Reporter == "" {
		host, _ := os.Hostname()
		c.Reporter = host + "/activator"
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	d := c.withDefaults()
	switch {
	case c.MaxQueue < 0:
		return errors.New("activator: MaxQueue must not be negative")
	case c.RetryAfter < 0 || c.ActivateTimeout < 0 || c.ReactivateAfter < 0 || c.IdleForget < 0:
		return errors.New("activator: durations must not be negative")
	case d.SampleInterval <= 0 || d.StatsInterval < d.SampleInterval:
		return errors.New("activator: need 0 < SampleInterval <= StatsInterval")
	}
	if err := exchange.ValidateMaxRetries(c.MaxRetries); err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	return c.Proxy.Validate()
}
