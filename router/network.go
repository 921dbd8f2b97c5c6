package router

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/internal/proxy"
)

// The headers an activator reads a handed-over request's target from; they
// mirror activator.Header*. Clients cannot forge them: the router drops
// every Ebb-* field a client sends before adding these.
const (
	headerFunction = "Ebb-Function"
	headerRevision = "Ebb-Revision"
	headerDeadline = "Ebb-Deadline"
)

// NetworkActivator is an Activator in another process: it forwards the
// request to that activator's HTTP handler, naming the function, revision
// and deadline in Ebb-* headers, and relays the answer. The request keeps
// the X-Forwarded-* fields this router adds, and the activator trusts them.
type NetworkActivator struct {
	up *proxy.Upstream
}

// NewNetworkActivator reaches the activator at addr (host:port) through
// transport, which must be running (Transport.Run) for idle eviction.
func NewNetworkActivator(addr string, transport *proxy.Transport) *NetworkActivator {
	return &NetworkActivator{up: transport.Upstream(addr)}
}

// Close releases the connections to the activator.
func (n *NetworkActivator) Close() { n.up.Close() }

// Serve implements Activator.
func (n *NetworkActivator) Serve(ctx *fasthttp.RequestCtx, function, revision string, deadline time.Time) {
	hdr := make([]byte, 0, 96+len(function)+len(revision))
	hdr = append(hdr, headerFunction+": "...)
	hdr = append(hdr, function...)
	hdr = append(hdr, "\r\n"+headerRevision+": "...)
	hdr = append(hdr, revision...)
	hdr = append(hdr, "\r\n"+headerDeadline+": "...)
	hdr = strconv.AppendInt(hdr, deadline.UnixMilli(), 10)
	hdr = append(hdr, "\r\n"...)
	// The activator answers 504 itself at the deadline; give it a moment
	// past that before we give up on it.
	opts := proxy.Options{Deadline: deadline.Add(time.Second), Header: hdr}
	if err := proxy.Forward(ctx, n.up, &opts, nopDone{}); err != nil {
		status := proxy.StatusFor(err)
		writeError(ctx, status, "ebb: activator unavailable\n")
	}
}

type nopDone struct{}

func (nopDone) ExchangeDone(int, error) {}
