package otlp

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ebbrun/ebb/internal/tracing"
)

// DefaultServiceName names the spans' service when Config leaves it empty.
const DefaultServiceName = "ebb-router"

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP/HTTP receiver's URL, such as
	// http://collector:4318; a URL without a path gets /v1/traces.
	// Required.
	Endpoint string
	// ServiceName is the service.name resource attribute. Default
	// DefaultServiceName.
	ServiceName string
	// BatchTimeout bounds how long a finished span waits to be sent.
	// Default 1s.
	BatchTimeout time.Duration
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return fmt.Errorf("otlp endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("otlp endpoint %q: want an http:// or https:// URL", c.Endpoint)
	}
	if c.BatchTimeout < 0 {
		return fmt.Errorf("otlp batch timeout %v: must not be negative", c.BatchTimeout)
	}
	return nil
}

// Exporter turns request timelines into spans and sends them.
type Exporter struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New returns an Exporter sending to cfg.Endpoint. Shutdown flushes it.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = DefaultServiceName
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = time.Second
	}
	endpoint := cfg.Endpoint
	if u, _ := url.Parse(endpoint); u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
		endpoint = u.String()
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(cfg.BatchTimeout)),
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(presetIDs{}),
		// A caller that does not sample its trace is followed; a new
		// trace is always recorded.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &Exporter{tp: tp, tracer: tp.Tracer("github.com/ebbrun/ebb/router")}, nil
}

// Shutdown sends what is pending and stops the exporter.
func (e *Exporter) Shutdown(ctx context.Context) error {
	if err := e.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("otlp shutdown: %w", err)
	}
	return nil
}

// Export records r's spans; the SDK sends them in the background.
func (e *Exporter) Export(r *tracing.Request) {
	ctx := context.Background()
	if r.Parent.IsValid() {
		var flags trace.TraceFlags
		if r.Sampled {
			flags = trace.FlagsSampled
		}
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID(r.TraceID), SpanID: trace.SpanID(r.Parent), TraceFlags: flags, Remote: true,
		}))
	}
	attrs := []attribute.KeyValue{
		attribute.String("ebb.function", r.Function),
		attribute.String("ebb.revision", r.Revision),
		attribute.String("ebb.replica", r.Replica),
		semconv.HTTPResponseStatusCode(r.Status),
		attribute.String("network.protocol.name", "http"),
		attribute.String("ebb.protocol", r.Protocol),
	}
	if r.Handoff != nil {
		attrs = append(attrs, attribute.Bool("ebb.cold", r.Handoff.Cold))
	}
	sctx, server := e.tracer.Start(with(ctx, r.TraceID, r.Server), "router "+r.Function,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(r.Start), trace.WithAttributes(attrs...))
	if r.Status >= 500 {
		server.SetStatus(codes.Error, "")
	}
	e.span(sctx, r.TraceID, "route", r.Start, r.Routed, trace.SpanKindInternal)
	if h := r.Handoff; h != nil && !h.QueuedAt.IsZero() && !h.AcquiredAt.IsZero() {
		qctx, queue := e.tracer.Start(with(sctx, r.TraceID, tracing.NewSpanID()), "activator.queue",
			trace.WithTimestamp(h.QueuedAt), trace.WithAttributes(attribute.Bool("ebb.cold", h.Cold)))
		if h.Cold {
			h.Phases.Spans(func(name string, start, end time.Time) {
				e.span(qctx, r.TraceID, "coldstart."+name, start, end, trace.SpanKindInternal)
			})
		}
		queue.End(trace.WithTimestamp(h.AcquiredAt))
	}
	if !r.ProxyStart.IsZero() {
		_, proxy := e.tracer.Start(with(sctx, r.TraceID, r.Proxy), "proxy",
			trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(r.ProxyStart),
			trace.WithAttributes(attribute.String("ebb.replica", r.Replica)))
		proxy.End(trace.WithTimestamp(r.End))
	}
	server.End(trace.WithTimestamp(r.End))
}

func (e *Exporter) span(ctx context.Context, t tracing.TraceID, name string, start, end time.Time, kind trace.SpanKind) {
	_, s := e.tracer.Start(with(ctx, t, tracing.NewSpanID()), name, trace.WithSpanKind(kind), trace.WithTimestamp(start))
	s.End(trace.WithTimestamp(end))
}

// presetKey carries the ids the next span started from a context gets.
type presetKey struct{}

type preset struct {
	trace tracing.TraceID
	span  tracing.SpanID
}

func with(ctx context.Context, t tracing.TraceID, s tracing.SpanID) context.Context {
	return context.WithValue(ctx, presetKey{}, preset{t, s})
}

// presetIDs gives a span the ids its context presets, so that spans keep
// the ids the router already sent downstream.
type presetIDs struct{}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	p, _ := ctx.Value(presetKey{}).(preset)
	if !p.trace.IsValid() {
		p.trace = tracing.NewTraceID()
	}
	if !p.span.IsValid() {
		p.span = tracing.NewSpanID()
	}
	return trace.TraceID(p.trace), trace.SpanID(p.span)
}

func (presetIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	p, _ := ctx.Value(presetKey{}).(preset)
	if !p.span.IsValid() {
		p.span = tracing.NewSpanID()
	}
	return trace.SpanID(p.span)
}
