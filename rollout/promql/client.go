package promql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultTimeout bounds one query when Config.Timeout is zero: well under
// the default analysis interval (10s), so a slow Prometheus delays a
// window's verdict but does not pile queries up.
const DefaultTimeout = 5 * time.Second

// MaxTimeout is the longest Config.Timeout.
const MaxTimeout = time.Minute

// Config says which Prometheus a Client asks, and how.
type Config struct {
	// URL is the Prometheus base URL, http or https, with a host and
	// optionally a path prefix (https://prom.example/prometheus), as
	// ebbd's --prometheus-url. Required.
	URL string
	// Timeout bounds each query, both the HTTP exchange and, sent as the
	// query's timeout parameter rounded up to whole seconds, its
	// evaluation by Prometheus. Zero means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient sends the requests. Nil means a client of its own, with a
	// transport cloned from http.DefaultTransport (so proxies from the
	// environment apply) but not shared with it.
	HTTPClient *http.Client
	// Logger receives the warnings Prometheus sends with a result, which
	// are not errors (the result stands). Nil discards them.
	Logger *slog.Logger
}

// Validate checks the URL and the timeout.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("prometheus url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("prometheus url: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("prometheus url %s: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("prometheus url %s: needs a host", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("prometheus url %s: a base URL takes no query or fragment", u.Redacted())
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		return fmt.Errorf("prometheus timeout %s is outside 0-%s", c.Timeout, MaxTimeout)
	}
	return nil
}

// Client runs instant queries against one Prometheus. It is safe for
// concurrent use.
type Client struct {
	api     promv1.API
	timeout time.Duration
	log     *slog.Logger
}

// New returns a Client for cfg, validated here. It does not contact
// Prometheus: a Prometheus down at start only makes checks inconclusive.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c, err := promapi.NewClient(promapi.Config{Address: cfg.URL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return &Client{api: promv1.NewAPI(c), timeout: cfg.Timeout, log: cfg.Logger}, nil
}

// Query runs query as an instant query evaluated at at (now, if zero) and
// returns its one number: a scalar's value, or the value of a vector's
// only sample. An empty vector is NaN with a nil error: the series does
// not exist (yet), which is no value rather than a failure; so is a NaN
// value, such as 0/0 over a window with no requests. A vector of
// several samples, a matrix or a string is an error, as are a query
// Prometheus refuses, an unreachable Prometheus and a query that outlasts
// the timeout; every error names the query.
func (c *Client) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Prometheus stops evaluating when we stop waiting (the caller's
	// deadline may be the nearer one), give or take the second it rounds
	// to: it refuses a fractional timeout such as 2.5s.
	deadline, _ := ctx.Deadline()
	eval := ceilSeconds(time.Until(deadline))
	v, warnings, _, err := c.api.Query(ctx, query, at, promv1.WithTimeout(eval))
	if err != nil {
		return math.NaN(), fmt.Errorf("query %s: %w", shorten(query), err)
	}
	if len(warnings) > 0 {
		c.log.Warn("prometheus warned about a rollout check", "query", query, "warnings", []string(warnings))
	}
	f, err := number(v)
	if err != nil {
		return math.NaN(), fmt.Errorf("query %s: %w", shorten(query), err)
	}
	return f, nil
}

// number is the one number a check's result must be.
func number(v model.Value) (float64, error) {
	switch r := v.(type) {
	case *model.Scalar:
		return float64(r.Value), nil
	case model.Vector:
		switch len(r) {
		case 0:
			return math.NaN(), nil
		case 1:
			return float64(r[0].Value), nil
		}
		return math.NaN(), fmt.Errorf("returned %d series, a check needs one number (aggregate them, e.g. with sum)", len(r))
	case nil:
		return math.NaN(), errors.New("returned no result")
	}
	return math.NaN(), fmt.Errorf("returned a %s, a check needs a scalar or a one-series vector", v.Type())
}
