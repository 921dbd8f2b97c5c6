package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultClientTimeout bounds each non-streaming call of a Client unless
// WithTimeout says otherwise. Streaming calls (PushImage, Logs) have no
// overall bound: an image upload or a followed log may take as long as it
// takes, and the caller's context ends it.
const DefaultClientTimeout = 30 * time.Second

// DefaultUserAgent is the User-Agent a Client sends unless WithUserAgent says otherwise.
const DefaultUserAgent = "ebb-api-client"

// maxErrorBody caps how much of an error response the client reads, so a
// misbehaving proxy cannot make it buffer an unbounded body.
const maxErrorBody = 64 << 10

// Client is a typed client for the control-plane API. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	token     string
	hc        *http.Client
	userAgent string
	timeout   time.Duration
	// namespace is where the function calls go; "" means the default.
	namespace string
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient makes the client send requests through hc instead of its own
// http.Client. hc.Timeout, if set, applies to every call including the
// streaming ones, so leave it zero and rely on contexts and WithTimeout.
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *Client) { c.hc = hc }
}

// WithUserAgent sets the User-Agent header. Default DefaultUserAgent.
func WithUserAgent(ua string) ClientOption {
	return func(c *Client) { c.userAgent = ua }
}

// WithTimeout bounds each non-streaming call; 0 leaves only the caller's
// context. Default DefaultClientTimeout.
func WithTimeout(d time.Duration) ClientOption {
	return func(c *Client) { c.timeout = d }
}

// WithNamespace makes the client's function calls address the functions of
// namespace ns. Default DefaultNamespace, through the /v1/functions paths.
func WithNamespace(ns string) ClientOption {
	return func(c *Client) { c.namespace = ns }
}

// InNamespace returns a copy of the client whose function calls address
// namespace ns; it shares the original's connections.
func (c *Client) InNamespace(ns string) *Client {
	cp := *c
	cp.namespace = ns
	return &cp
}

// Namespace is the namespace the client's function calls address.
func (c *Client) Namespace() string {
	if c.namespace == "" {
		return DefaultNamespace
	}
	return c.namespace
}

// NewClient returns a client for the API at baseURL ("http://127.0.0.1:8090";
// a bare "host:port" means http) that authenticates with token.
func NewClient(baseURL, token string, opts ...ClientOption) (*Client, error) {
	base, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      base,
		token:     token,
		userAgent: DefaultUserAgent,
		timeout:   DefaultClientTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = newHTTPClient()
	}
	return c, nil
}

// ParseBaseURL parses an API address: an http(s) URL, or a bare host:port
// that means http. It rejects query strings and fragments, which have no
// meaning for a base URL.
func ParseBaseURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("api address is empty")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("api address %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("api address %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("api address %q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("api address %q must not carry credentials, a query or a fragment", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// newHTTPClient builds the client's own transport. Every phase before the
// body has a bound, but the client itself has no overall Timeout because
// that would cut image uploads and followed logs; unary calls get their
// bound from WithTimeout through the request context instead.
func newHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
	}
}

// BaseURL returns the API address the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// APIError is an error answer from the API: the HTTP status plus the
// {"error":{"code","message"}} body. Answers that do not carry that body (a
// proxy's 502, say) have an empty Code and a Message built from the status
// and the start of the body.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

// Is makes errors.Is(err, &APIError{Status: 404}) or
// errors.Is(err, &APIError{Code: CodeConflict}) match on the fields the
// target sets.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	if !ok {
		return false
	}
	return (t.Status == 0 || t.Status == e.Status) && (t.Code == "" || t.Code == e.Code)
}

func apiStatus(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports whether err is an API answer of 404.
func IsNotFound(err error) bool { return apiStatus(err) == http.StatusNotFound }

// IsConflict reports whether err is an API answer of 409: a concurrent change won.
func IsConflict(err error) bool { return apiStatus(err) == http.StatusConflict }

// IsUnauthorized reports whether err is an API answer of 401 or 403.
func IsUnauthorized(err error) bool {
	s := apiStatus(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// IsRejected reports whether the API refused the request itself (any 4xx):
// retrying the same request will not help.
func IsRejected(err error) bool { s := apiStatus(err); return s >= 400 && s < 500 }

// IsServerError reports whether the API failed on its side (any 5xx).
func IsServerError(err error) bool { return apiStatus(err) >= 500 }

// PushImage uploads an OCI image layout tar or a docker-save tar (optionally
// gzip-compressed) and returns the imported image. The body is streamed from
// r, never buffered whole. PushImage does not close r; when r is a pipe, close
// its reading end after PushImage returns so the writer is not left blocked.
func (c *Client) PushImage(ctx context.Context, r io.Reader) (Image, error) {
	// NopCloser keeps r the caller's: the transport would otherwise close it.
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/images", nil, io.NopCloser(r))
	if err != nil {
		return Image{}, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	// A known length lets the server refuse an oversized upload up front
	// instead of after reading up to its limit.
	if n, ok := remainingLength(r); ok {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
	}
	var img Image
	_, err = c.roundTrip(req, &img, http.StatusCreated, http.StatusOK)
	return img, err
}

// remainingLength reports how many bytes a regular file has left to read.
func remainingLength(r io.Reader) (int64, bool) {
	f, ok := r.(interface {
		Stat() (fs.FileInfo, error)
		io.Seeker
	})
	if !ok {
		return 0, false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil || off > fi.Size() {
		return 0, false
	}
	return fi.Size() - off, true
}

// ListImages returns the images pushed so far.
func (c *Client) ListImages(ctx context.Context) ([]Image, error) {
	return listPages(ctx, c, "/v1/images", func(l *ImageList) ([]Image, string) { return l.Images, l.Continue })
}

// PutFunction creates or updates a function. created is true when the
// function did not exist before (201). Re-applying an unchanged spec is a
// no-op that keeps the latest revision.
func (c *Client) PutFunction(ctx context.Context, name string, spec FunctionSpec) (fn Function, created bool, err error) {
	path, err := c.functionPath(name)
	if err != nil {
		return Function{}, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, spec, &fn, http.StatusCreated, http.StatusOK)
	return fn, err == nil && status == http.StatusCreated, err
}

// GetFunction returns a function's spec and status.
func (c *Client) GetFunction(ctx context.Context, name string) (Function, error) {
	var fn Function
	path, err := c.functionPath(name)
	if err != nil {
		return fn, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &fn, http.StatusOK)
	return fn, err
}

// ListFunctions returns every function of the client's namespace with its status.
func (c *Client) ListFunctions(ctx context.Context) ([]Function, error) {
	path, err := c.functionsPath()
	if err != nil {
		return nil, err
	}
	return listPages(ctx, c, path, func(l *FunctionList) ([]Function, string) { return l.Functions, l.Continue })
}

// DeleteFunction deletes a function with its revisions and traffic.
func (c *Client) DeleteFunction(ctx context.Context, name string) error {
	path, err := c.functionPath(name)
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent, http.StatusOK)
	return err
}

// ListRevisions returns a function's revisions.
func (c *Client) ListRevisions(ctx context.Context, name string) ([]Revision, error) {
	path, err := c.functionPath(name, "/revisions")
	if err != nil {
		return nil, err
	}
	return listPages(ctx, c, path, func(l *RevisionList) ([]Revision, string) { return l.Revisions, l.Continue })
}

// SetTraffic replaces a function's traffic split and returns the function.
func (c *Client) SetTraffic(ctx context.Context, name string, targets []TrafficTarget) (Function, error) {
	var fn Function
	path, err := c.functionPath(name, "/traffic")
	if err != nil {
		return fn, err
	}
	_, err = c.unary(ctx, http.MethodPut, path, TrafficRequest{Traffic: targets}, &fn, http.StatusOK)
	return fn, err
}

// LogOptions selects the log lines of Logs.
type LogOptions struct {
	// Follow keeps the stream open for new lines until ctx ends.
	Follow bool
	// Tail returns only the last Tail lines; 0 (or less) returns all of them.
	Tail int
	// Revision limits the lines to one revision; empty means all of them.
	Revision string
	// Access asks for the function's access log (one JSON line per
	// request, from the routers' recent lines) instead of its replicas'
	// output. It does not combine with Revision.
	Access bool
}

// Logs streams a function's logs as text, one line per log line prefixed
// "{replica} {stream}: ". The caller must close the stream; with Follow it
// ends when ctx does.
func (c *Client) Logs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error) {
	path, err := c.functionPath(name, "/logs")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if opts.Revision != "" {
		q.Set("revision", opts.Revision)
	}
	if opts.Access {
		q.Set("access", "true")
	}
	return c.stream(ctx, path, q, "text/plain")
}

// stream GETs path and returns the body of a 200 for the caller to read
// as it arrives (logs, watches); any other status is the API's error.
func (c *Client) stream(ctx context.Context, path string, q url.Values, accept string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// ListNodes returns the node records: capacity, pool and eBPF status.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	return listPages(ctx, c, "/v1/nodes", func(l *NodeList) ([]Node, string) { return l.Nodes, l.Continue })
}

// functionsPath is the client's namespace's function list; the default
// namespace keeps the /v1/functions paths.
func (c *Client) functionsPath() (string, error) {
	ns := c.Namespace()
	if ns == DefaultNamespace {
		return "/v1/functions", nil
	}
	if err := ValidateName("namespace", ns); err != nil {
		return "", err
	}
	return "/v1/namespaces/" + ns + "/functions", nil
}

// functionPath checks the names locally, because they become path
// segments: a name such as ".." or "a/b" must not address some other
// route.
func (c *Client) functionPath(name string, rest ...string) (string, error) {
	base, err := c.functionsPath()
	if err != nil {
		return "", err
	}
	if err := ValidateName("function name", name); err != nil {
		return "", err
	}
	return base + "/" + name + strings.Join(rest, ""), nil
}

func namespacePath(ns string) (string, error) {
	if err := ValidateName("namespace", ns); err != nil {
		return "", err
	}
	return "/v1/namespaces/" + ns, nil
}

// CreateNamespace creates namespace ns. created is false when it existed
// already, which is not an error.
func (c *Client) CreateNamespace(ctx context.Context, ns string) (out Namespace, created bool, err error) {
	path, err := namespacePath(ns)
	if err != nil {
		return out, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, NamespaceSpec{}, &out, http.StatusCreated, http.StatusOK)
	return out, err == nil && status == http.StatusCreated, err
}

// GetNamespace returns one namespace.
func (c *Client) GetNamespace(ctx context.Context, ns string) (Namespace, error) {
	var out Namespace
	path, err := namespacePath(ns)
	if err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out, err
}

// ListNamespaces returns every namespace, default included.
func (c *Client) ListNamespaces(ctx context.Context) ([]Namespace, error) {
	return listPages(ctx, c, "/v1/namespaces", func(l *NamespaceList) ([]Namespace, string) { return l.Namespaces, l.Continue })
}

// DeleteNamespace deletes namespace ns with everything in it. Without
// force the API refuses (409) while a function of ns has ready replicas.
func (c *Client) DeleteNamespace(ctx context.Context, ns string, force bool) error {
	path, err := namespacePath(ns)
	if err != nil {
		return err
	}
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, http.MethodDelete, path, q, nil)
	if err != nil {
		return err
	}
	_, err = c.roundTrip(req, nil, http.StatusNoContent, http.StatusOK)
	return err
}

// unary runs a bounded request whose response is one JSON document.
func (c *Client) unary(ctx context.Context, method, path string, in, out any, ok ...int) (int, error) {
	return c.do(ctx, method, path, nil, nil, in, out, ok...)
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// roundTrip sends req, decodes a success body into out (when out is not nil)
// and turns any other status into an *APIError.
func (c *Client) roundTrip(req *http.Request, out any, ok ...int) (int, error) {
	resp, err := c.hc.Do(req) // a *url.Error names the method and URL
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	good := false
	for _, s := range ok {
		good = good || resp.StatusCode == s
	}
	if !good {
		return resp.StatusCode, decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		// Drain so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode %s %s answer: %w", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, nil
}

// decodeError reads an error answer. It prefers the API's envelope and falls
// back to the status line plus the start of the body, on one line.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env ErrorBody
	if json.Unmarshal(b, &env) == nil && (env.Error.Code != "" || env.Error.Message != "") {
		msg := env.Error.Message
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return &APIError{Status: resp.StatusCode, Code: env.Error.Code, Message: msg}
	}
	msg := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if text := oneLine(string(b), 200); text != "" {
		msg += ": " + text
	}
	return &APIError{Status: resp.StatusCode, Message: msg}
}

// oneLine collapses whitespace runs (including newlines) and truncates to max bytes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
