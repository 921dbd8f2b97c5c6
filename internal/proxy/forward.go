package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Errors Forward returns. Each wraps the underlying cause.
var (
	// ErrUnavailable means no byte of the request reached the upstream: the
	// dial failed or a pooled connection was found dead before use. The
	// request may be retried anywhere.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrTimeout means the deadline passed before the response header came.
	ErrTimeout = errors.New("upstream timed out")
	// ErrUpstream means the upstream failed mid-exchange or did not speak
	// HTTP/1.1.
	ErrUpstream = errors.New("upstream failed")
	// ErrClientBody means the client's request body ended early or broke.
	ErrClientBody = errors.New("reading client request body")
	// ErrOutOfDescriptors means this process could not open a connection
	// to the upstream because it has no file descriptor left (EMFILE,
	// ENFILE). Nothing was sent and the upstream is not to blame: wait for
	// connections to close and try again, and do not mark it down.
	ErrOutOfDescriptors = errors.New("out of file descriptors")
)

// StatusFor maps a Forward error to the status a proxy should answer with.
func StatusFor(err error) int {
	switch {
	case errors.Is(err, ErrTimeout):
		return fasthttp.StatusGatewayTimeout
	case errors.Is(err, ErrClientBody):
		return fasthttp.StatusBadRequest
	case errors.Is(err, ErrOutOfDescriptors):
		return fasthttp.StatusServiceUnavailable
	default:
		return fasthttp.StatusBadGateway
	}
}

// Done learns when a forwarded exchange is over. Forward calls ExchangeDone
// exactly once for every request it returns nil for: before it returns when
// the response was read whole, or later, once fasthttp has finished writing
// (or given up writing) a streamed body or a tunnel has closed. status is
// the upstream's status code; err is why the exchange ended early, if it did.
type Done interface {
	ExchangeDone(status int, err error)
}

// Options are per-request settings for Forward.
type Options struct {
	// Deadline bounds the exchange with the upstream: connecting, sending,
	// the response header and any streamed body. Zero means none.
	Deadline time.Time
	// Traceparent, when set, replaces any traceparent field the client
	// sent: the router's trace context for the replica.
	Traceparent []byte
}

// Forward sends ctx's request to u and puts the upstream's response in
// ctx.Response. On error nothing was relayed to the client, ctx.Response is
// reset, and done is not called; see the Err* values and StatusFor.
func Forward(ctx *fasthttp.RequestCtx, u *Upstream, o *Options, done Done) error {
	now := ctx.Time().UnixNano()
	h := &ctx.Request.Header
	if h.ConnectionUpgrade() && len(h.Peek("Upgrade")) > 0 {
		return forwardUpgrade(ctx, u, o, done)
	}
	c := u.get(now)
	if c == nil {
		var err error
		if c, err = u.dial(now); err != nil {
			return err
		}
	}
	var deadline int64
	if !o.Deadline.IsZero() {
		deadline = o.Deadline.UnixNano()
	}
	if err := c.setDeadline(deadline, now); err != nil {
		c.close()
		return fmt.Errorf("set deadline: %w: %w", ErrUnavailable, err)
	}
	if err := writeRequest(c, ctx, o, &u.t.cfg, nil); err != nil {
		c.close()
		return err
	}
	return readResponse(c, ctx, u, now, done)
}

// writeRequest sends the request head and body. upgrade, when set, is the
// Upgrade value to keep on a protocol switch.
func writeRequest(c *conn, ctx *fasthttp.RequestCtx, o *Options, cfg *Config, upgrade []byte) error {
	req := &ctx.Request
	cl := req.Header.ContentLength()
	bs := req.BodyStream()

	// Decide the framing we send; we never relay the client's own.
	var (
		body      []byte
		inline    int   // bytes of bs to read into the head's buffer
		framing   int64 // Content-Length, or -1 for chunked, -2 for none
		streaming bool
	)
	switch {
	case cl == -2 || cl == 0:
		framing = int64(cl)
		if cl == -2 && !req.Header.IsGet() && !req.Header.IsHead() {
			framing = 0
		}
	case bs == nil:
		body = req.Body()
		framing = int64(len(body))
	case cl > 0 && cl <= cfg.MaxInlineRequestBody:
		inline = cl
		framing = int64(cl)
	default:
		streaming = true
		framing = int64(cl)
	}

	buf := appendHead(c.wbuf[:0], ctx, framing, upgrade, o.Traceparent)
	if inline > 0 {
		start := len(buf)
		buf = grow(buf, inline)
		if _, err := io.ReadFull(bs, buf[start:start+inline]); err != nil {
			c.keep(buf)
			return fmt.Errorf("%w: %w", ErrClientBody, err)
		}
	} else if len(body) > 0 {
		buf = append(buf, body...)
	}
	n, err := c.writeRequestHead(buf, !streaming)
	c.keep(buf)
	if err != nil {
		if n == 0 && c.reused {
			return fmt.Errorf("write to pooled connection: %w: %w", ErrUnavailable, err)
		}
		return upstreamErr("write request", err)
	}
	if !streaming {
		return nil
	}
	// Long uploads outlive the server's header read timeout; the exchange
	// deadline is what bounds them.
	if nc := ctx.Conn(); nc != nil {
		_ = nc.SetReadDeadline(o.Deadline)
	}
	if framing >= 0 {
		return copyFixed(c.nc, bs, framing)
	}
	return copyChunked(c.nc, bs)
}

// keep retains the scratch buffer for the next request unless it grew huge.
func (c *conn) keep(buf []byte) {
	if cap(buf) <= 64<<10 {
		c.wbuf = buf[:0]
	} else {
		c.wbuf = nil
	}
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFixed sends exactly n body bytes from r.
func copyFixed(w io.Writer, r io.Reader, n int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for n > 0 {
		chunk := buf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		m, rerr := r.Read(chunk)
		if m > 0 {
			if _, err := w.Write(chunk[:m]); err != nil {
				return upstreamErr("write request body", err)
			}
			n -= int64(m)
		}
		if rerr != nil {
			if n == 0 && rerr == io.EOF {
				return nil
			}
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: %w", ErrClientBody, rerr)
		}
	}
	return nil
}

// copyChunked re-frames a decoded body stream as chunked, one write per
// chunk with its size line and CRLF around the data.
func copyChunked(w io.Writer, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	const headRoom = 18 // up to 16 hex digits + CRLF
	for {
		m, rerr := r.Read(buf[headRoom : len(buf)-2])
		if m > 0 {
			var size [16]byte
			hex := strconv.AppendInt(size[:0], int64(m), 16)
			start := headRoom - len(hex) - 2
			copy(buf[start:], hex)
			buf[headRoom-2], buf[headRoom-1] = '\r', '\n'
			end := headRoom + m
			buf[end], buf[end+1] = '\r', '\n'
			if _, err := w.Write(buf[start : end+2]); err != nil {
				return upstreamErr("write request body", err)
			}
		}
		if rerr == io.EOF {
			if _, err := io.WriteString(w, "0\r\n\r\n"); err != nil {
				return upstreamErr("write request body", err)
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", ErrClientBody, rerr)
		}
	}
}

func upstreamErr(what string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) {
		return fmt.Errorf("%s: %w: %w", what, ErrTimeout, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: %w: %w", what, ErrTimeout, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUpstream, err)
}

// readResponse reads the upstream's answer into ctx.Response, either whole
// or as a body stream that gives the connection back when it is drained.
func readResponse(c *conn, ctx *fasthttp.RequestCtx, u *Upstream, now int64, done Done) error {
	resp := &ctx.Response
	h := &resp.Header
	for {
		if err := h.Read(c.br); err != nil {
			c.close()
			resp.Reset()
			return upstreamErr("read response header", err)
		}
		// Interim responses (100 Continue, 103 Early Hints) are ours to
		// absorb: fasthttp already answered the client's Expect.
		if s := h.StatusCode(); s >= 200 || s == fasthttp.StatusSwitchingProtocols || s < 100 {
			break
		}
	}
	status := h.StatusCode()
	upstreamClose := h.ConnectionClose()
	h.ResetConnectionClose()
	stripResponseHopByHop(h)

	if ctx.IsHead() || status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified {
		resp.SkipBody = ctx.IsHead()
		finish(c, u, upstreamClose, now)
		done.ExchangeDone(status, nil)
		return nil
	}
	cl := h.ContentLength()
	if cl >= 0 && cl <= u.t.cfg.MaxBufferedBody {
		if err := resp.ReadBody(c.br, 0); err != nil {
			c.close()
			resp.Reset()
			return upstreamErr("read response body", err)
		}
		finish(c, u, upstreamClose, now)
		done.ExchangeDone(status, nil)
		return nil
	}
	s := bodyPool.Get().(*bodyStream)
	*s = bodyStream{c: c, u: u, br: c.br, done: done, status: status, now: now, reuse: !upstreamClose}
	switch {
	case cl >= 0:
		s.left = int64(cl)
	case cl == -1:
		s.chunked = true
	default:
		s.untilClose = true
		s.reuse = false
		cl = -1
	}
	resp.SetBodyStream(s, cl)
	return nil
}

func finish(c *conn, u *Upstream, closeIt bool, now int64) {
	if closeIt {
		c.close()
		return
	}
	u.put(c, now)
}
