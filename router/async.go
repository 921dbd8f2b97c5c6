package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/exchange"
)

// Enqueuer stores an asynchronous invocation durably before it returns;
// queue.Queue implements it. A stored duplicate (same Idempotency-Key)
// comes back with dup true.
type Enqueuer interface {
	Enqueue(ctx context.Context, inv api.Invocation) (stored api.Invocation, dup bool, err error)
}

// enqueueTimeout bounds the queue's write for one async request.
const enqueueTimeout = 10 * time.Second

// asyncSkip are the headers not kept for the delivery: the connection's
// own and the framing, which the delivery sets anew.
var asyncSkip = []string{"Host", "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

// enqueue answers a request that asked for asynchronous invocation
// (Ebb-Invoke: async) of function: it is stored in the queue and answered
// 202 with the invocation, its id and where to read it; the invoker
// delivers it later through this router.
func (r *Router) enqueue(ctx *fasthttp.RequestCtx, function string, mode []byte) {
	if !bytes.EqualFold(mode, []byte("async")) {
		exchange.WriteError(ctx, fasthttp.StatusBadRequest, "ebb: "+api.HeaderInvoke+" must be async\n")
		return
	}
	if r.deps.Async == nil {
		exchange.WriteError(ctx, fasthttp.StatusNotImplemented, "ebb: asynchronous invocation is not enabled on this router (no queue)\n")
		return
	}
	h := &ctx.Request.Header
	opts, err := api.ParseInvocationOptions(func(name string) string { return string(h.Peek(name)) })
	if err == nil && opts.CallbackURL != "" {
		err = r.cfg.CallbackPolicy.CheckURL(opts.CallbackURL)
		if err != nil {
			err = &api.ValidationError{Field: api.HeaderCallbackURL, Reason: err.Error()}
		}
	}
	if err != nil {
		exchange.WriteError(ctx, fasthttp.StatusBadRequest, "ebb: "+err.Error()+"\n")
		return
	}
	if h.ContentLength() > api.MaxInvocationBody {
		tooLarge(ctx)
		return
	}
	body, err := asyncBody(ctx)
	if errors.Is(err, errTooLarge) {
		tooLarge(ctx)
		return
	}
	if err != nil {
		exchange.WriteError(ctx, fasthttp.StatusBadRequest, "ebb: read the request body: "+err.Error()+"\n")
		return
	}
	req := api.InvocationRequest{Method: string(ctx.Method()), Path: string(ctx.RequestURI()), Body: body, Header: http.Header{}}
	for k, v := range h.All() {
		name := http.CanonicalHeaderKey(string(k))
		if !skipAsync(name) {
			req.Header[name] = append(req.Header[name], string(v))
		}
	}
	wctx, cancel := context.WithTimeout(context.Background(), enqueueTimeout)
	defer cancel()
	inv, dup, err := r.deps.Async.Enqueue(wctx, api.NewInvocation(function, req, opts, time.Now().UTC()))
	if err != nil {
		r.log.Warn("queue an async invocation", "function", function, "err", err)
		exchange.WriteError(ctx, fasthttp.StatusServiceUnavailable, "ebb: the invocation could not be queued; retry\n")
		return
	}
	out, err := json.Marshal(inv.Brief())
	if err != nil {
		exchange.WriteError(ctx, fasthttp.StatusInternalServerError, "ebb: encode the invocation: "+err.Error()+"\n")
		return
	}
	ctx.Response.Header.Set(api.HeaderInvocationID, inv.ID)
	ctx.Response.Header.Set("Location", api.InvocationLocation(inv.Function, inv.ID))
	ctx.Response.Header.SetContentType("application/json")
	if dup {
		ctx.SetStatusCode(fasthttp.StatusOK)
	} else {
		ctx.SetStatusCode(fasthttp.StatusAccepted)
	}
	ctx.Response.SetBody(append(out, '\n'))
}

func skipAsync(name string) bool {
	for _, s := range asyncSkip {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return strings.EqualFold(name, api.HeaderInvoke)
}

var errTooLarge = errors.New("body too large")

// asyncBody reads the request's body, at most api.MaxInvocationBody
// bytes: the router streams bodies, so a chunked body's size is known
// only once read.
func asyncBody(ctx *fasthttp.RequestCtx) ([]byte, error) {
	var src io.Reader
	if s := ctx.RequestBodyStream(); s != nil {
		src = s
	} else {
		src = bytes.NewReader(ctx.Request.Body())
	}
	body, err := io.ReadAll(io.LimitReader(src, api.MaxInvocationBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > api.MaxInvocationBody {
		return nil, errTooLarge
	}
	return body, nil
}

func tooLarge(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose() // the rest of the body is not read
	exchange.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, "ebb: an asynchronous request's body may have at most 1 MiB\n")
}
