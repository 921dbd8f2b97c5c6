package nodeagent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Reasons a probe gives up before the replica is ready.
var (
	errProbeTimeout = errors.New("not ready before the probe deadline")
	errExited       = errors.New("process exited")
	errStopped      = errors.New("stop requested")
)

// prober checks one replica's readiness.
type prober struct {
	addr     string
	path     string // empty: TCP connect only
	interval time.Duration
	timeout  time.Duration
	dial     DialFunc
	request  []byte
	// h2c probes with an HTTP/2 request with prior knowledge, for a
	// program that speaks nothing else (a gRPC server): an HTTP/1.1
	// request would only get its connection closed.
	h2c bool
}

// newProber returns a prober of addr; a nil dial means TCP.
func newProber(dial DialFunc, addr, path string, tcpOnly bool, interval, timeout time.Duration) *prober {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	p := &prober{addr: addr, interval: interval, timeout: timeout, dial: dial}
	if !tcpOnly {
		p.path = path
		p.request = []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: ebb-probe\r\nConnection: close\r\n\r\n")
	}
	return p
}

// wait polls until the replica answers, returning nil, or until the
// deadline, the process's exit (exited closes), a stop (stop closes) or ctx.
// Polling, not backoff: a refused connect on loopback costs microseconds,
// and every interval waited is added to a cold start.
func (p *prober) wait(ctx context.Context, exited, stop <-chan struct{}) error {
	deadline := time.NewTimer(p.timeout)
	defer deadline.Stop()
	tick := time.NewTimer(0)
	defer tick.Stop()
	<-tick.C
	for {
		if p.once(ctx) == nil {
			return nil
		}
		tick.Reset(p.interval)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errExited
		case <-stop:
			return errStopped
		case <-deadline.C:
			return errProbeTimeout
		case <-tick.C:
		}
	}
}

// once makes one attempt: a TCP connect, and for HTTP one GET whose status
// must be below 500.
func (p *prober) once(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, defaultProbeAttemptTimeout)
	defer cancel()
	c, err := p.dial(actx, "tcp", p.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if p.path == "" {
		return nil
	}
	if p.h2c {
		return p.onceH2C(actx, c)
	}
	// The first request may wait for the program's own initialisation;
	// the overall deadline still bounds it.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(p.request); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(c, 256).ReadSlice('\n')
	if err != nil {
		return err
	}
	code, err := parseStatusLine(line)
	if err != nil {
		return err
	}
	if code >= 500 {
		return fmt.Errorf("probe answered %d", code)
	}
	return nil
}

func parseStatusLine(line []byte) (int, error) {
	// "HTTP/1.1 200 OK\r\n"
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) {
		return 0, fmt.Errorf("probe: not an HTTP status line: %q", line)
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil || code < 100 || code > 999 {
		return 0, fmt.Errorf("probe: bad status in %q", line)
	}
	return code, nil
}

// countEstablished parses /proc/net/tcp{,6}: "sl local rem st ...", with
// addresses as HEXIP:HEXPORT and state 01 for ESTABLISHED.
func countEstablished(table []byte, port int) int {
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for i, line := range strings.Split(string(table), "\n") {
		if i == 0 {
			continue // header
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if strings.HasSuffix(f[1], want) && f[3] == "01" {
			n++
		}
	}
	return n
}
