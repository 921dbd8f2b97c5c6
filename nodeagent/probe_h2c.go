package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// onceH2C sends one GET over c with HTTP/2 prior knowledge; any answer
// below 500 is ready. A gRPC server answers a plain GET 415, which says it
// serves: readiness is about the server, not about a method the probe
// cannot know.
func (p *prober) onceH2C(ctx context.Context, c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			return c, nil
		},
	}
	cc, err := tr.NewClientConn(c)
	if err != nil {
		return fmt.Errorf("probe: h2c: %w", err)
	}
	defer cc.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+p.path, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	req.Header.Set("User-Agent", "ebb-probe")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("probe: h2c: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("probe answered %d", resp.StatusCode)
	}
	return nil
}
