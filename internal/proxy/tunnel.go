package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/valyala/fasthttp"
)

var errShutdown = errors.New("transport shut down")

// forwardUpgrade relays a protocol switch (WebSocket and the like). The
// handshake goes over a fresh connection; if the upstream agrees (101), the
// client connection is hijacked and bytes are copied both ways until either
// side closes. Otherwise the answer is relayed as an ordinary response.
func forwardUpgrade(ctx *fasthttp.RequestCtx, u *Upstream, o *Options, done Done) error {
	now := ctx.Time().UnixNano()
	c, err := u.dial(now)
	if err != nil {
		return err
	}
	if !o.Deadline.IsZero() {
		if err := c.setDeadline(o.Deadline.UnixNano(), now); err != nil {
			c.close()
			return fmt.Errorf("set deadline: %w: %w", ErrUnavailable, err)
		}
	}
	upgrade := append([]byte(nil), ctx.Request.Header.Peek("Upgrade")...)
	if err := writeRequest(c, ctx, o, &u.t.cfg, upgrade); err != nil {
		c.close()
		return err
	}
	line, err := c.br.Peek(12)
	if err != nil {
		c.close()
		return upstreamErr("read response header", err)
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.")) || string(line[9:12]) != "101" {
		return readResponse(c, ctx, u, now, done)
	}
	head, err := readRawHead(c.br)
	if err != nil {
		c.close()
		return upstreamErr("read response header", err)
	}
	// A tunnel lives as long as its peers want; the request deadline bounded
	// only the handshake.
	_ = c.setDeadline(0, now)
	t := u.t
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) { t.tunnel(client, c, head, done) })
	return nil
}

func (t *Transport) tunnel(client net.Conn, c *conn, head []byte, done Done) {
	if !t.trackTunnel(client) {
		_ = client.Close()
		c.close()
		done.ExchangeDone(fasthttp.StatusSwitchingProtocols, errShutdown)
		return
	}
	defer t.untrackTunnel(client)
	if !t.trackTunnel(c.nc) {
		_ = client.Close()
		c.close()
		done.ExchangeDone(fasthttp.StatusSwitchingProtocols, errShutdown)
		return
	}
	defer t.untrackTunnel(c.nc)

	if _, err := client.Write(head); err != nil {
		_ = client.Close()
		c.close()
		done.ExchangeDone(fasthttp.StatusSwitchingProtocols, err)
		return
	}
	upstream := io.Reader(c.nc)
	if c.br.Buffered() > 0 {
		// Bytes the upstream sent right behind its 101 sit in our buffer.
		upstream = c.br
	}
	errc := make(chan error, 1)
	go func() {
		errc <- pipe(c.nc, client)
		// The client is done sending; closing both ends the other copy.
		_ = client.Close()
		c.close()
	}()
	err := pipe(client, upstream)
	_ = client.Close()
	c.close()
	if err2 := <-errc; err == nil {
		err = err2
	}
	done.ExchangeDone(fasthttp.StatusSwitchingProtocols, err)
}

func pipe(dst io.Writer, src io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return ignoreClosed(err)
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return ignoreClosed(rerr)
		}
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// readRawHead copies a response head, up to and including its blank line.
func readRawHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		head = append(head, line...)
		if len(head) > 64<<10 {
			return nil, errors.New("response head too large")
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return head, nil
		}
	}
}
