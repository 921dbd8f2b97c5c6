package router

import (
	"net/http"
	"time"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/internal/tracing"
)

// beginStreamObservation is beginObservation for a request served on the
// HTTP/2 path: it starts or continues the trace and gives the replica its
// traceparent in the request's own header, which the HTTP/2 forwarder
// sends as it is.
func (r *Router) beginStreamObservation(req *http.Request, start time.Time) *tracing.Request {
	tr := &tracing.Request{Start: start, Routed: time.Now()}
	if parent := r.startTrace(tr, []byte(req.Header.Get(tracing.HeaderTraceparent)), nil); parent != nil {
		req.Header.Set(tracing.HeaderTraceparent, string(parent))
	}
	return tr
}

// endStream ends an observed request of the HTTP/2 path in the one place
// every request ends, endRequest.
func (r *Router) endStream(tr *tracing.Request, st *stream, sw *statusWriter, bytesIn int64, proto string) {
	rec := accesslog.Record{
		Time:     tr.Start,
		Function: st.rev.function,
		Revision: st.rev.name,
		Status:   sw.result(),
		BytesIn:  bytesIn,
		BytesOut: sw.n,
		Protocol: proto,
		Cold:     st.cold,
		TraceID:  tr.TraceID,
	}
	if st.rep != nil {
		rec.Replica = st.rep.ID
		tr.ProxyStart = st.acquired
	}
	if st.cold && !st.acquired.IsZero() {
		rec.StartDuration = st.acquired.Sub(tr.Start)
	}
	r.endRequest(&rec, tr)
}
