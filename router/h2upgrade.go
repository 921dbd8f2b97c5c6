package router

import (
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// switchingToH2C is the answer to an accepted upgrade (RFC 7540 §3.2).
var switchingToH2C = []byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")

// upgradeH2C takes an HTTP/1.1 request that asks to switch to h2c
// (Connection: Upgrade, HTTP2-Settings; Upgrade: h2c), answers 101 and
// serves the connection as HTTP/2 from then on, the request itself being
// its stream 1. It reports false, leaving the request to HTTP/1.1, for any
// other request, a malformed HTTP2-Settings, or a body larger than
// maxUpgradeBody: the server may ignore an upgrade. The caller checked
// ctx.Request.Header.ConnectionUpgrade().
func (r *Router) upgradeH2C(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if !bytes.EqualFold(h.Peek("Upgrade"), []byte("h2c")) {
		return false
	}
	settings, ok := decodeSettings(h.Peek("Http2-Settings"))
	if !ok {
		return false
	}
	// -1 is a chunked body, which would have to be read whole first;
	// -2 is none at all.
	if cl := h.ContentLength(); cl == -1 || cl > maxUpgradeBody {
		return false
	}
	req, err := upgradeRequest(ctx)
	if err != nil {
		r.log.Debug("h2c upgrade: unusable request", "err", err)
		return false
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(r.cfg.ReadHeaderTimeout))
		if _, err := c.Write(switchingToH2C); err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Time{})
		r.h2.conns.Add(1)
		defer r.h2.conns.Done()
		r.h2.srv.ServeConn(coalesce(c), &http2.ServeConnOpts{
			BaseConfig:     r.h2.base,
			Handler:        r.h2.base.Handler,
			UpgradeRequest: req,
			Settings:       settings,
		})
	})
	return true
}

// decodeSettings reads HTTP2-Settings: base64url, padded or not, of a
// SETTINGS payload (6 bytes a setting).
func decodeSettings(v []byte) ([]byte, bool) {
	if len(v) == 0 || len(v) > 4096 {
		return nil, false
	}
	v = bytes.TrimRight(v, "=")
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(v)))
	n, err := base64.RawURLEncoding.Decode(out, v)
	if err != nil || n%6 != 0 {
		return nil, false
	}
	return out[:n], true
}

// upgradeRequest is the HTTP/1.1 request as net/http's, minus the
// upgrade's own headers, with its body read (it is at most
// maxUpgradeBody).
func upgradeRequest(ctx *fasthttp.RequestCtx) (*http.Request, error) {
	body := append([]byte(nil), ctx.Request.Body()...)
	u, err := url.ParseRequestURI(string(ctx.Request.Header.RequestURI()))
	if err != nil {
		return nil, err
	}
	req := &http.Request{
		Method:        string(ctx.Method()),
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        http.Header{},
		Host:          string(ctx.Host()),
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
		RemoteAddr:    ctx.RemoteAddr().String(),
		RequestURI:    u.RequestURI(),
	}
	for k, v := range ctx.Request.Header.All() {
		switch http.CanonicalHeaderKey(string(k)) {
		case "Connection", "Upgrade", "Http2-Settings", "Host", "Content-Length", "Transfer-Encoding", "Keep-Alive":
			continue
		}
		req.Header.Add(string(k), string(v))
	}
	return req, nil
}
