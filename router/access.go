package router

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/internal/tracing"
)

// AccessLogger takes one record per request; accesslog.Logger implements it.
type AccessLogger interface {
	Log(rec *accesslog.Record)
}

// SpanExporter turns a request's timeline into spans; tracing/otlp's
// Exporter implements it.
type SpanExporter interface {
	Export(req *tracing.Request)
}

// observation is what the router records of one request while an access
// log or a span exporter is configured. It is pooled: observing allocates
// nothing in steady state.
type observation struct {
	rec     accesslog.Record
	tr      tracing.Request
	handoff tracing.Handoff
	replica string // the replica the router itself sent the request to
	header  []byte // the Server-Timing value
	parent  [55]byte
}

var observations = sync.Pool{New: func() any { return &observation{header: make([]byte, 0, 128)} }}

// observing reports whether requests are logged or traced; with neither,
// the request path reads no header and no clock for them.
func (r *Router) observing() bool {
	return r.deps.AccessLog != nil || r.deps.Tracer != nil
}

// beginObservation starts or continues the request's trace. A valid
// traceparent is continued; anything else (none, malformed, all-zero ids,
// an unknown version of the wrong shape) starts a new trace. The replica
// gets a traceparent naming the router's proxy span when spans are
// exported; otherwise a valid one passes through untouched (the router's
// spans would exist nowhere) and a new trace is sent unsampled, so the
// replica's own logs can carry the id the access log has.
func (r *Router) beginObservation(ctx *fasthttp.RequestCtx) *observation {
	o := observations.Get().(*observation)
	o.tr.Start = ctx.Time()
	o.handoff.Traceparent = r.startTrace(&o.tr, ctx.Request.Header.Peek(tracing.HeaderTraceparent), o.parent[:0])
	// The activator fills it if the request goes its way.
	ctx.SetUserValue(tracing.HandoffKey, &o.handoff)
	return o
}

// startTrace fills tr's ids from the request's traceparent (incoming, a
// header value) for either protocol, and returns the traceparent to send
// the replica, appended to dst, or nil when the incoming one passes
// through untouched.
func (r *Router) startTrace(tr *tracing.Request, incoming, dst []byte) []byte {
	p, continued := tracing.ParseParent(incoming)
	if continued {
		tr.TraceID, tr.Parent, tr.Sampled = p.TraceID, p.SpanID, p.Sampled()
	} else {
		tr.TraceID, tr.Sampled = tracing.NewTraceID(), true
	}
	tr.Server = tracing.NewSpanID()
	switch {
	case r.deps.Tracer != nil:
		tr.Proxy = tracing.NewSpanID()
		var flags byte
		if tr.Sampled {
			flags = tracing.FlagSampled
		}
		return tracing.AppendParent(dst, tr.TraceID, tr.Proxy, flags)
	case !continued:
		return tracing.AppendParent(dst, tr.TraceID, tr.Server, 0)
	}
	return nil
}

// routed notes that the request was routed and, when rep is not empty,
// sent to that replica by the router itself.
func (o *observation) routed(rep string) {
	o.tr.Routed = time.Now()
	o.replica = rep
}

// endObservation finishes the request's fasthttp side: a cold response
// gets a Server-Timing header with its wait and start phases, and the
// request is recorded.
func (r *Router) endObservation(ctx *fasthttp.RequestCtx, o *observation, rev *revState) {
	ctx.RemoveUserValue(tracing.HandoffKey)
	h := &o.handoff
	if h.Used && h.Cold {
		o.header = h.AppendServerTiming(o.header[:0])
		ctx.Response.Header.AddBytesV("Server-Timing", o.header)
	}
	rec := &o.rec
	*rec = accesslog.Record{
		Time:     o.tr.Start,
		Function: rev.function,
		Revision: rev.name,
		Replica:  o.replica,
		Status:   ctx.Response.StatusCode(),
		BytesIn:  max(0, int64(ctx.Request.Header.ContentLength())),
		Protocol: "HTTP/1.1",
		TraceID:  o.tr.TraceID,
	}
	if !ctx.Request.Header.IsHTTP11() {
		rec.Protocol = "HTTP/1.0"
	}
	if ctx.Response.IsBodyStream() {
		rec.BytesOut = max(0, int64(ctx.Response.Header.ContentLength()))
	} else {
		rec.BytesOut = int64(len(ctx.Response.Body()))
	}
	o.tr.ProxyStart = o.tr.Routed
	if h.Used {
		rec.Replica, rec.Cold = h.Replica, h.Cold
		if h.Cold {
			rec.StartDuration = h.Wait()
		}
		o.tr.ProxyStart = h.AcquiredAt
		o.tr.Handoff = h
	}
	r.endRequest(rec, &o.tr)
	*o = observation{header: o.header[:0]}
	observations.Put(o)
}

// endRequest is where every request ends, whichever protocol brought it:
// it fills in the duration, writes the access log line and exports the
// trace. tr may be nil when the request was not traced. The HTTP/1.1 path
// calls it from endObservation; an HTTP/2 stream calls it when it ends.
func (r *Router) endRequest(rec *accesslog.Record, tr *tracing.Request) {
	end := time.Now()
	rec.Duration = end.Sub(rec.Time)
	if r.deps.AccessLog != nil {
		r.deps.AccessLog.Log(rec)
	}
	if r.deps.Tracer != nil && tr != nil && tr.Sampled {
		tr.End = end
		tr.Function, tr.Revision, tr.Replica = rec.Function, rec.Revision, rec.Replica
		tr.Status, tr.Protocol = rec.Status, rec.Protocol
		if tr.ProxyStart.IsZero() && rec.Replica != "" {
			tr.ProxyStart = tr.Routed
		}
		if rec.Replica == "" {
			tr.ProxyStart = time.Time{} // no replica was called
		}
		r.deps.Tracer.Export(tr)
	}
}
