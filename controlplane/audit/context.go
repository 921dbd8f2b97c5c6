package audit

import (
	"context"
	"sync"
)

type actorKey struct{}

type noteKey struct{}

// WithActor returns ctx carrying the id of the credential that makes the
// request (a token id, "admin", a node's credential id). The
// authenticating middleware calls it; it also tells an enclosing audit
// middleware, which reads the id once the handler returns.
func WithActor(ctx context.Context, id string) context.Context {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.set(func(e *Event) { e.TokenID = id })
	}
	return context.WithValue(ctx, actorKey{}, id)
}

// ActorFrom returns the credential id WithActor put in ctx, or "".
func ActorFrom(ctx context.Context) string {
	id, _ := ctx.Value(actorKey{}).(string)
	return id
}

// SetObject names the object of the request being audited, for a handler
// that knows better than its path (an image push learns its image's name
// only from the upload). Without an audit middleware it does nothing.
func SetObject(ctx context.Context, object string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.set(func(e *Event) { e.Object = object })
	}
}

// SetNamespace names the namespace of the request being audited, for a
// handler whose namespace is in its body rather than its path.
func SetNamespace(ctx context.Context, ns string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.set(func(e *Event) { e.Namespace = ns })
	}
}

// SetVerb names the verb of the request being audited, for a handler whose
// method says less than it knows (a PUT that created its object).
func SetVerb(ctx context.Context, verb string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.set(func(e *Event) { e.Verb = verb })
	}
}

// note collects what the handlers of one request tell the audit
// middleware about it. A handler may hand the request's context to
// another goroutine, hence the lock.
type note struct {
	mu    sync.Mutex
	edits []func(*Event)
}

func withNote(ctx context.Context) (context.Context, *note) {
	n := &note{}
	return context.WithValue(ctx, noteKey{}, n), n
}

func (n *note) set(edit func(*Event)) {
	n.mu.Lock()
	n.edits = append(n.edits, edit)
	n.mu.Unlock()
}

func (n *note) apply(e *Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, edit := range n.edits {
		edit(e)
	}
}
