package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Timing is one request of the harness's own client.
type Timing struct {
	Status int
	// FirstByte is from just before the dial to the first response byte.
	FirstByte time.Duration
	// Total is from just before the dial to the end of the body.
	Total time.Duration
	Err   error
	// Body is the start of the body of an answer other than 200.
	Body string
}

// FirstRequest sends one GET over a fresh connection, as a user's first
// request would arrive, and times the first response byte and the whole
// response. The connection is closed afterwards.
func FirstRequest(ctx context.Context, addr, host, path string, timeout time.Duration) Timing {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Timing{Err: fmt.Errorf("dial: %w", err)}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ebbbench\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return Timing{Err: fmt.Errorf("write: %w", err)}
	}
	br := bufio.NewReader(conn)
	if _, err := br.Peek(1); err != nil {
		return Timing{Err: fmt.Errorf("read: %w", err)}
	}
	t := Timing{FirstByte: time.Since(start)}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Err = fmt.Errorf("read response: %w", err)
		return t
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		t.Body = string(b)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t.Total = time.Since(start)
	t.Status = resp.StatusCode
	if err != nil {
		t.Err = fmt.Errorf("read body: %w", err)
	}
	return t
}

// waitHTTP polls GET http://addr/ until it answers (any status) or the
// deadline passes, every interval. It is the readiness probe of the floors:
// the same loop for a process and for a container.
func waitHTTP(ctx context.Context, addr string, interval, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	req := []byte("GET / HTTP/1.1\r\nHost: floor\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 16)
	for {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, err = conn.Write(req)
			if err == nil {
				var n int
				n, err = io.ReadAtLeast(conn, buf, 12)
				if err == nil && n >= 12 && string(buf[:5]) == "HTTP/" {
					conn.Close()
					return nil
				}
			}
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %v", addr, timeout, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(interval)
	}
}

// getBody is FirstRequest that also returns the body, for small answers.
func getBody(ctx context.Context, hc *http.Client, addr, host, path string) (Timing, string) {
	return getBodyWith(ctx, hc, addr, host, path, nil)
}

// getBodyWith is getBody with request headers.
func getBodyWith(ctx context.Context, hc *http.Client, addr, host, path string, header map[string]string) (Timing, string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return Timing{Err: err}, ""
	}
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return Timing{Err: err}, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Timing{Status: resp.StatusCode, Total: time.Since(start), Err: err}, string(b)
}
