package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/audit"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/store"
)

// Config configures the API server. The zero value of each field means its
// documented default.
type Config struct {
	// Addr is the listen address. Default 127.0.0.1:8090: the API is local
	// unless an operator chooses otherwise.
	Addr string
	// Token is the admin token, the first-start token file's content: it
	// authenticates as admin, beside the scoped API tokens kept at
	// tokens/{id} in the store. Required; see LoadOrCreateToken.
	Token string
	// Domain is the routing domain for function URLs. Default "localhost".
	Domain string
	// RouterPort is the router's public port, used in URLs. Default 8080;
	// port 80 is left out of URLs.
	RouterPort int
	// MaxBodyBytes bounds JSON request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// MaxImageBytes bounds image uploads. Default 2 GiB.
	MaxImageBytes int64
	// SpoolDir holds image uploads while they are validated and imported.
	// Required. New creates it and removes the files a previous process
	// left in it, so no other process may use it.
	SpoolDir string
	// MaxSpoolBytes bounds the bytes that all image uploads in progress
	// hold in SpoolDir together; an upload that finds it full gets 503 with
	// Retry-After. Default DefaultMaxSpoolBytes.
	MaxSpoolBytes int64
}

// DefaultMaxSpoolBytes is the default MaxSpoolBytes, 4 GiB: room for one
// upload as large as the default MaxImageBytes allows once decompressed
// (twice MaxImageBytes), or for several smaller ones.
const DefaultMaxSpoolBytes = 4 << 30

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8090"
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	if c.RouterPort == 0 {
		c.RouterPort = 8080
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxImageBytes == 0 {
		c.MaxImageBytes = 2 << 30
	}
	if c.MaxSpoolBytes == 0 {
		c.MaxSpoolBytes = DefaultMaxSpoolBytes
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case len(c.Token) < 16:
		return errors.New("controlplane: token must be at least 16 characters")
	case c.SpoolDir == "":
		return errors.New("controlplane: spool dir is required")
	case c.MaxBodyBytes < 1024:
		return errors.New("controlplane: max body bytes must be at least 1024")
	case c.MaxImageBytes < c.MaxBodyBytes:
		return errors.New("controlplane: max image bytes must be at least max body bytes")
	case c.MaxSpoolBytes < 0:
		return errors.New("controlplane: max spool bytes must not be negative")
	case c.RouterPort < 1 || c.RouterPort > 65535:
		return fmt.Errorf("controlplane: router port %d is outside 1-65535", c.RouterPort)
	}
	return api.ValidateName("domain", strings.ReplaceAll(c.Domain, ".", "-"))
}

// ImageImporter puts a validated image archive into the container runtime
// and removes what it added if it fails.
type ImageImporter interface {
	Import(ctx context.Context, archivePath string) (api.Image, error)
	Delete(ctx context.Context, name string) error
}

// LogReader streams a function's replica logs to w. With follow it keeps
// streaming until ctx ends.
type LogReader interface {
	Logs(ctx context.Context, w io.Writer, req LogRequest) error
}

// LogRequest selects log lines.
type LogRequest struct {
	Function string
	Revision string // empty means every revision
	Tail     int    // the newest lines of all replicas together; 0 means all kept lines
	Follow   bool
	// Access asks for the routers' access log lines of the function
	// instead of its replicas' output; Revision is then empty.
	Access bool
}

// Deps are the server's collaborators.
type Deps struct {
	Store  store.Store
	Images ImageImporter
	// Logs may be nil, in which case the logs endpoint answers 501.
	Logs LogReader
	// AccessLogs reads the routers' access lines (LogRequest.Access); nil
	// when no router keeps them, and access requests answer 501.
	AccessLogs LogReader
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Internal, when set, serves /internal/ paths: the component-to-component
	// endpoints (autoscaler stats and activations) that other nodes call. It
	// authenticates on its own.
	Internal http.Handler
	// Audit, when set, records every mutating call and serves GET
	// /v1/audit (see audit.go); ebbd always sets it.
	Audit *audit.Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Secrets keeps the secret objects; nil answers 501 to the secrets API
	// and refuses functions that use secrets.
	Secrets *Secrets
	// Queue is the asynchronous invocation queue; nil answers 501 to the
	// invocations API and to the routes that enqueue (a cron trigger's
	// run-now).
	Queue queue.Queue
	// NodeLive, if set, says whether a node's liveness lease holds; GET
	// /v1/nodes then gives a live node's heartbeat as now and a dead
	// one's as none, since records are written only when they change.
	NodeLive func(node string) bool
}

// Server is the control-plane API.
type Server struct {
	cfg      Config
	deps     Deps
	spool    *ociimage.SpoolDir
	handler  http.Handler
	requests *prometheus.CounterVec
	// mux is the router routes() fills through handle and handleNamespaced.
	mux *http.ServeMux
	// cascades are what else a namespace's delete removes; see namespaceCascades.
	cascades []namespaceCascade
	// authn resolves a request's bearer token to a principal.
	authn *auth.Authenticator
	// served lists the patterns registered; routeErrs the routes refused
	// because the route table (controlplane/auth) does not declare them.
	served    []string
	routeErrs []error
	// bookmarkEvery is how often a watch sends a BOOKMARK heartbeat.
	bookmarkEvery time.Duration
}

// New builds a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Images == nil || deps.Logger == nil {
		return nil, errors.New("controlplane: store, images and logger are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	spool, left, err := ociimage.OpenSpoolDir(cfg.SpoolDir, cfg.MaxSpoolBytes)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	if left.Files > 0 {
		// A process killed during an upload leaves its spool file; nothing
		// else would ever remove it.
		deps.Logger.Info("removed leftover image uploads from the spool", "dir", cfg.SpoolDir, "files", left.Files, "bytes", left.Bytes)
	}
	s := &Server{cfg: cfg, deps: deps, spool: spool, bookmarkEvery: DefaultBookmarkInterval}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ebb_api_requests_total",
		Help: "Control-plane API requests by route and status code.",
	}, []string{"route", "code"})
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	s.cascades = namespaceCascades()
	// The clock is read through s.deps, so a test may move it.
	s.authn = &auth.Authenticator{AdminToken: cfg.Token, Store: deps.Store, Now: func() time.Time { return s.deps.Now() }}
	s.handler = s.routes()
	if len(s.routeErrs) > 0 {
		// No route is ever served without a declared permission.
		return nil, fmt.Errorf("controlplane: %w", errors.Join(s.routeErrs...))
	}
	return s, nil
}

// Handler is the server's HTTP handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.deps.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.deps.Logger.Info("api listening", "addr", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("api serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // streaming log followers hold connections open; cut them
	}
	<-errc
	return nil
}

func (s *Server) routes() http.Handler {
	s.mux = http.NewServeMux()
	mux := s.mux
	s.handle("POST /v1/images", s.pushImage)
	s.handle("GET /v1/images", s.listImages)
	s.handleNamespaced("GET", "/functions", s.listFunctions)
	s.handleNamespaced("PUT", "/functions/{name}", s.putFunction)
	s.handleNamespaced("GET", "/functions/{name}", s.getFunction)
	s.handleNamespaced("DELETE", "/functions/{name}", s.deleteFunction)
	s.handleNamespaced("GET", "/functions/{name}/revisions", s.listRevisions)
	s.handleNamespaced("DELETE", "/functions/{name}/revisions/{rev}", s.deleteRevision)
	s.handleNamespaced("PUT", "/functions/{name}/traffic", s.putTraffic)
	s.handleNamespaced("GET", "/functions/{name}/rollouts", s.listRollouts)
	s.handleNamespaced("GET", "/functions/{name}/rollouts/{id}", s.getRollout)
	s.handleNamespaced("POST", "/functions/{name}/rollouts/{id}/{action}", s.actOnRollout)
	s.handleNamespaced("GET", "/functions/{name}/logs", s.logs)
	s.handleNamespaced("POST", "/functions/{name}/invocations", s.submitInvocation)
	s.handleNamespaced("GET", "/functions/{name}/invocations", s.listInvocations)
	s.handleNamespaced("GET", "/functions/{name}/invocations/{id}", s.getInvocation)
	s.handleNamespaced("GET", "/functions/{name}/crontriggers", s.listCronTriggers)
	s.handleNamespaced("PUT", "/functions/{name}/crontriggers/{trigger}", s.putCronTrigger)
	s.handleNamespaced("GET", "/functions/{name}/crontriggers/{trigger}", s.getCronTrigger)
	s.handleNamespaced("DELETE", "/functions/{name}/crontriggers/{trigger}", s.deleteCronTrigger)
	s.handleNamespaced("POST", "/functions/{name}/crontriggers/{trigger}/run", s.runCronTrigger)
	s.handleNamespaced("GET", "/jobs", s.listJobs)
	s.handleNamespaced("PUT", "/jobs/{name}", s.putJob)
	s.handleNamespaced("GET", "/jobs/{name}", s.getJob)
	s.handleNamespaced("DELETE", "/jobs/{name}", s.deleteJob)
	s.handleNamespaced("GET", "/jobs/{name}/logs", s.jobLogs)
	s.handleNamespaced("POST", "/apply", s.apply)
	s.handleNamespaced("GET", "/secrets", s.listSecrets)
	s.handleNamespaced("PUT", "/secrets/{name}", s.putSecret)
	s.handleNamespaced("GET", "/secrets/{name}", s.getSecret)
	s.handleNamespaced("DELETE", "/secrets/{name}", s.deleteSecret)
	s.handle("POST /v1/secrets/rotate-key", s.rotateSecretsKey)
	s.handleNamespaced("GET", "/domains", s.listDomains)
	s.handleNamespaced("PUT", "/domains/{host}", s.putDomain)
	s.handleNamespaced("GET", "/domains/{host}", s.getDomain)
	s.handleNamespaced("DELETE", "/domains/{host}", s.deleteDomain)
	s.handle("GET /v1/namespaces", s.listNamespaces)
	s.handle("GET /v1/namespaces/{ns}", s.getNamespace)
	s.handle("PUT /v1/namespaces/{ns}", s.putNamespace)
	s.handle("DELETE /v1/namespaces/{ns}", s.deleteNamespace)
	s.handle("GET /v1/namespaces/{ns}/quota", s.getQuota)
	s.handle("PUT /v1/namespaces/{ns}/quota", s.putQuota)
	s.handle("GET /v1/nodes", s.listNodes)
	s.handle("POST /v1/tokens", s.createToken)
	s.handle("GET /v1/tokens", s.listTokens)
	s.handle("DELETE /v1/tokens/{id}", s.revokeToken)
	s.handle("POST /v1/namespaces/{ns}/tokens", s.createToken)
	s.handle("GET /v1/namespaces/{ns}/tokens", s.listTokens)
	s.handle("DELETE /v1/namespaces/{ns}/tokens/{id}", s.revokeToken)
	s.handle("GET /v1/audit", s.readAudit)
	s.serve("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	s.serve("GET /readyz", http.HandlerFunc(s.readyz))
	if s.deps.Gatherer != nil {
		// Metrics name every function of every namespace: metrics:read.
		s.serve("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{}))
	}
	if s.deps.Internal != nil {
		s.serve("/internal/", s.deps.Internal)
	}
	s.serve("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	}))
	return s.audited(mux)
}

// handle registers an authenticated API route; pattern is also its
// metrics label.
func (s *Server) handle(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	route, err := auth.Lookup(pattern)
	if err != nil {
		s.routeErrs = append(s.routeErrs, err)
		return
	}
	s.served = append(s.served, pattern)
	s.mux.Handle(pattern, s.authenticated(route, h))
}

// serve registers a plain handler under the route table's rule for its
// pattern: public routes and /internal/ (which checks node credentials
// itself, Deps.Internal) as they are, any other behind its permission.
func (s *Server) serve(pattern string, h http.Handler) {
	route, err := auth.Lookup(pattern)
	if err != nil {
		s.routeErrs = append(s.routeErrs, err)
		return
	}
	s.served = append(s.served, pattern)
	switch route.Permission {
	case auth.Public, auth.Internal:
		s.mux.Handle(pattern, h)
	default:
		s.mux.Handle(pattern, s.authenticated(route, func(w http.ResponseWriter, r *http.Request) error {
			h.ServeHTTP(w, r)
			return nil
		}))
	}
}

// handleNamespaced registers a route of objects that live in a namespace
// twice: at /v1/namespaces/{ns}{suffix} and, for the default namespace,
// at /v1{suffix}. Before h runs, the namespace's name is validated (400)
// and a namespace other than default must exist (404 naming it), so h
// reads it with namespaceOf and trusts it.
func (s *Server) handleNamespaced(method, suffix string, h func(http.ResponseWriter, *http.Request) error) {
	inNamespace := func(w http.ResponseWriter, r *http.Request) error {
		ns := namespaceOf(r)
		audit.SetNamespace(r.Context(), ns)
		if err := api.ValidateName("namespace", ns); err != nil {
			return err
		}
		if ns != api.DefaultNamespace {
			if _, _, err := s.namespace(r.Context(), ns); err != nil {
				return err
			}
		}
		return h(w, r)
	}
	s.handle(method+" /v1"+suffix, inNamespace)
	s.handle(method+" /v1/namespaces/{ns}"+suffix, inNamespace)
}

// namespaceOf is the namespace a request addresses: the {ns} of a
// /v1/namespaces/{ns}/... path, else default.
func namespaceOf(r *http.Request) string {
	if ns := r.PathValue("ns"); ns != "" {
		return ns
	}
	return api.DefaultNamespace
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.deps.Store.Get(ctx, "readyz"); err != nil && !errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusServiceUnavailable, api.CodeInternal, "store unavailable: "+err.Error())
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// authenticated resolves the bearer token to a principal (401 when there
// is none, or it expired), checks that the principal holds the route's
// permission in the request's namespace (403 naming it), then runs h with
// the principal in its context and turns h's error into the JSON error
// envelope.
func (s *Server) authenticated(route auth.Route, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	pattern := route.Pattern()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() { s.requests.WithLabelValues(pattern, fmt.Sprint(rec.code)).Inc() }()
		p, err := s.authn.Authenticate(r.Context(), r.Header.Get("Authorization"))
		switch {
		case errors.Is(err, auth.ErrExpired):
			rec.Header().Set("WWW-Authenticate", `Bearer realm="ebb", error="invalid_token"`)
			writeError(rec, http.StatusUnauthorized, api.CodeUnauthorized, "token expired; ask an admin for a new one")
			return
		case errors.Is(err, auth.ErrUnauthenticated):
			rec.Header().Set("WWW-Authenticate", `Bearer realm="ebb"`)
			writeError(rec, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong bearer token; see <data-dir>/token or `ebb tokens create`")
			return
		case err != nil:
			s.writeErr(rec, r, err)
			return
		}
		// The audit log names the token (its id, never its secret), a
		// refused call's too.
		r = r.WithContext(audit.WithActor(r.Context(), p.TokenID))
		ns := ""
		if route.Scope == auth.InNamespace {
			// A name that cannot be a namespace is a 400 for everyone,
			// and never echoed into a 403.
			ns = namespaceOf(r)
			if err := api.ValidateName("namespace", ns); err != nil {
				s.writeErr(rec, r, err)
				return
			}
			audit.SetNamespace(r.Context(), ns)
		}
		if err := auth.Authorize(p, route.Permission, ns); err != nil {
			writeError(rec, http.StatusForbidden, api.CodeForbidden, err.Error())
			return
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		if err := h(rec, r); err != nil {
			s.writeErr(rec, r, err)
		}
	})
}

// statusRecorder remembers the status for metrics and passes Flush through
// so log streaming works.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// httpError is an error that already knows its status and code.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody reads the answer
	}
	status, detail := s.errorOf(r, err)
	writeJSON(w, status, api.ErrorBody{Error: detail})
}

// errorOf is the status and error envelope an API answer gives err: the
// one classification of errors, for whole requests (writeErr) and for
// each document of an apply alike.
func (s *Server) errorOf(r *http.Request, err error) (int, api.ErrorDetail) {
	var he *httpError
	var maxErr *http.MaxBytesError
	var exceeded *quota.ExceededError
	switch {
	case errors.As(err, &exceeded):
		return http.StatusForbidden, quotaExceededDetail(exceeded)
	case errors.As(err, &he):
		return he.status, api.ErrorDetail{Code: he.code, Message: he.msg}
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: api.CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", maxErr.Limit)}
	case api.IsValidation(err):
		return http.StatusBadRequest, api.ErrorDetail{Code: api.CodeInvalid, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeNotFound, Message: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeConflict, Message: "a concurrent change won; retry"}
	}
	s.deps.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: err.Error()}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads a bounded JSON body strictly: unknown fields, trailing
// data and non-JSON content types are rejected.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONLimit(w, r, v, s.cfg.MaxBodyBytes)
}

// decodeJSONLimit is decodeJSON with a limit of its own, for a route whose
// bodies are larger (secrets).
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	// curl -d sends form encoding by default; its body is still our JSON.
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type must be application/json, not %q", ct)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if err := api.DecodeStrict(body, v); err != nil {
		return err // writeErr maps *http.MaxBytesError to 413
	}
	return nil
}

// functionName is the qualified name (api.QualifiedName) of the function
// a request addresses in its namespace: what the store and every component
// know it by.
func (s *Server) functionName(r *http.Request) (string, error) {
	ns, name := namespaceOf(r), r.PathValue("name")
	if err := api.ValidateQualified(ns, name); err != nil {
		return "", err
	}
	return api.QualifiedName(ns, name), nil
}
