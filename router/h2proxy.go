package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hopHeaders are the hop-by-hop fields (RFC 9110 §7.6.1) a proxy drops.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHop drops h's hop-by-hop fields, those Connection names included,
// and reports whether it asked for trailers (TE: trailers), which gRPC
// needs passed on.
func removeHop(h http.Header) (teTrailers bool) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, v := range h["Te"] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "trailers") {
				teTrailers = true
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	return teTrailers
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forwardStream proxies one stream to st.rep in the protocol its revision
// speaks, streaming both ways: each piece of the response is flushed to
// the client as it comes when the response has no length (a gRPC or
// other stream), and trailers follow the body. It is net/http's reverse
// proxy cut to what the router needs: the request's header map, which the
// server made for this stream alone, is reused rather than cloned.
//
// ctx is the stream's: the client's cancellation and the deadline. It is
// passed beside req, rather than by req.WithContext, to spare a copy of
// the request.
func (r *Router) forwardStream(ctx context.Context, w *statusWriter, req *http.Request, st *stream) {
	var tr http.RoundTripper = r.h2.h1Tr
	if st.rev.h2c {
		tr = r.h2.h2cTr
	}
	h := req.Header
	te := removeHop(h)
	if te {
		h["Te"] = []string{"trailers"}
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = []string{ip}
	}
	proto := "http"
	if req.TLS != nil {
		proto = "https"
	}
	h["X-Forwarded-Proto"] = []string{proto}
	h["X-Forwarded-Host"] = []string{req.Host}
	if st.grpc {
		// The replica's own deadline is the stream's: the client's
		// grpc-timeout or the function's timeout, whichever ends first,
		// so that it is the replica that answers DEADLINE_EXCEEDED, with
		// its trailers.
		h["Grpc-Timeout"] = []string{grpcTimeout(time.Until(st.deadline))}
	}
	out := &http.Request{
		Method:        req.Method,
		URL:           &url.URL{Scheme: "http", Host: st.rep.Addr, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          req.Body,
		ContentLength: req.ContentLength,
		Host:          req.Host,
		Trailer:       req.Trailer,
	}
	if req.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := tr.RoundTrip(out.WithContext(ctx))
	if err != nil {
		r.proxyError(w, st, err)
		return
	}
	defer resp.Body.Close()

	wh := w.Header()
	removeHop(resp.Header)
	for k, vv := range resp.Header {
		if old, ok := wh[k]; ok { // Set-Cookie of a sticky revision
			wh[k] = append(old, vv...)
		} else {
			wh[k] = vv
		}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		wh["Trailer"] = []string{strings.Join(names, ", ")}
	}
	if resp.ContentLength >= 0 && wh.Get("Content-Length") == "" {
		wh["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	w.WriteHeader(resp.StatusCode)
	streaming := resp.ContentLength < 0 || st.grpc

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away; its stream is gone
			}
			if streaming {
				w.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if st.grpc && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The deadline passed mid-stream: end it as gRPC does.
				wh[http.TrailerPrefix+"Grpc-Status"] = []string{"4"}
				wh[http.TrailerPrefix+"Grpc-Message"] = []string{"ebb: deadline exceeded"}
				w.failedLate = http.StatusGatewayTimeout
				return
			}
			// The replica broke off: reset the client's stream rather
			// than end it as if the answer were whole.
			w.aborted = true
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		wh[http.TrailerPrefix+k] = vv
	}
}
