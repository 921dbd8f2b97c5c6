package router

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/callbackurl"
	"github.com/ebbrun/ebb/internal/exchange"
	"github.com/ebbrun/ebb/internal/proxy"
)

// Config configures a Router. Zero fields take the documented defaults.
type Config struct {
	// Addr is where the router listens. Default ":8080".
	Addr string
	// CallbackPolicy is where an async request's Ebb-Callback-Url may
	// point; one it refuses is answered 400 at submit (the invoker checks
	// again as it dials). The zero policy allows public addresses only.
	CallbackPolicy callbackurl.Policy
	// Domain is the suffix of routed hosts: {fn}.{Domain} and
	// {tag}-{fn}.{Domain}. Default "localhost".
	Domain string
	// ReadHeaderTimeout bounds reading a request's header (and the first
	// part of its body) once its first byte arrived, so slow clients cannot
	// pin connections. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus header; larger requests
	// get 431. Default 16 KiB.
	MaxHeaderBytes int
	// MaxConns bounds concurrent client connections; past it a new
	// connection is answered 503 and closed. Default, and at most,
	// ConnCap of the process's open-file limit when New runs (at most
	// DefaultMaxConns): a larger value is lowered to it, since connections
	// past it could only fail for want of file descriptors.
	MaxConns int
	// MaxConnsPerIP, when set, bounds the concurrent connections from one
	// client IP address; past it a new one is answered 429 and closed.
	// Behind a load balancer or NAT many clients share an address, so it
	// suits only a router that sees its clients' own. Default 0: none.
	MaxConnsPerIP int
	// StickyCookie, when set, names a cookie that pins a client to the
	// revision it first got, for as long as that revision takes traffic.
	// The router sets it on the first response. Default off.
	StickyCookie string
	// StickyHeader, when set, names a request header (a user id, say) whose
	// value is hashed onto the traffic split, so one value always lands on
	// the same revision while the split holds. Default off.
	StickyHeader string
	// MaxRetries is how many other free replicas a request tries after
	// the replica it was sent to took no byte of it; a request that reached
	// a replica is never sent again (see internal/exchange). At most 16.
	// Default exchange.DefaultMaxRetries (2).
	MaxRetries int
	// Reporter names this router in the stats it reports. Default
	// "{hostname}/router".
	Reporter string
	// StatsInterval is how often stats go to the StatsSink. Default 1s.
	StatsInterval time.Duration
	// SampleInterval is how often in-flight counts are sampled for the
	// average concurrency. Default 10ms.
	SampleInterval time.Duration
	// Proxy configures upstream connections when the router builds its own
	// replica registry (Deps.Replicas nil).
	Proxy proxy.Config

	// TLSAddr is where the router terminates TLS when Deps.TLS is set
	// (and has no Listener). Default ":8443".
	TLSAddr string
	// HTTPSRedirect answers every plain-HTTP request for a routed host
	// with a 308 to the same URL over HTTPS, when the router terminates
	// TLS. A domain mapping can ask for it for its host alone.
	HTTPSRedirect bool
	// HSTSMaxAge, when positive, adds Strict-Transport-Security with this
	// max-age to responses over TLS. Default 0: off.
	HSTSMaxAge time.Duration
}

// Defaults for Config.
const (
	DefaultAddr              = ":8080"
	DefaultDomain            = "localhost"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxConns          = 256 << 10
	DefaultMaxRetries        = exchange.DefaultMaxRetries
	DefaultStatsInterval     = time.Second
	DefaultSampleInterval    = 10 * time.Millisecond
	DefaultTLSAddr           = ":8443"
)

// maxConns is the connection cap for a configured MaxConns and an
// open-file limit (0: unknown).
func maxConns(configured int, nofile uint64) int {
	limit := DefaultMaxConns
	if nofile > 0 {
		limit = ConnCap(nofile)
	}
	if configured == 0 || configured > limit {
		return limit
	}
	return configured
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.Reporter == "" {
		host, _ := os.Hostname()
		c.Reporter = host + "/router"
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.TLSAddr == "" {
		c.TLSAddr = DefaultTLSAddr
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	d := c.withDefaults()
	for _, label := range strings.Split(d.Domain, ".") {
		if err := api.ValidateName("domain", label); err != nil {
			return fmt.Errorf("router: domain %q: %w", d.Domain, err)
		}
	}
	switch {
	case c.ReadHeaderTimeout < 0 || c.IdleTimeout < 0:
		return errors.New("router: timeouts must not be negative")
	case c.MaxHeaderBytes < 0 || (c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 1024):
		return errors.New("router: MaxHeaderBytes must be at least 1024")
	case c.MaxConns < 0 || c.MaxConnsPerIP < 0:
		return errors.New("router: MaxConns and MaxConnsPerIP must not be negative")
	case d.SampleInterval <= 0 || d.StatsInterval < d.SampleInterval:
		return errors.New("router: need 0 < SampleInterval <= StatsInterval")
	case c.HSTSMaxAge < 0:
		return errors.New("router: HSTSMaxAge must not be negative")
	}
	// The names go into Set-Cookie and header lookups verbatim.
	if c.StickyCookie != "" && !isToken(c.StickyCookie) {
		return fmt.Errorf("router: StickyCookie %q is not a cookie name (letters, digits and !#$%%&'*+-.^_`|~)", c.StickyCookie)
	}
	if c.StickyHeader != "" && !isToken(c.StickyHeader) {
		return fmt.Errorf("router: StickyHeader %q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", c.StickyHeader)
	}
	if err := exchange.ValidateMaxRetries(c.MaxRetries); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return c.Proxy.Validate()
}

// isToken reports whether s is an RFC 9110 token, as header and cookie
// names are; at most 128 bytes.
func isToken(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
