package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/ebbrun/ebb/api"
)

// MiddlewareConfig configures Log.Middleware.
type MiddlewareConfig struct {
	// Report is told of every event that could not be written, with the
	// error, so that ebbd's own log keeps it.
	Report func(e Event, err error)
}

// Middleware records every mutating call to /v1/ (POST, PUT, PATCH,
// DELETE) whose credential next established (WithActor), after next
// handled it and before its answer leaves: next writes into a buffer, the
// line is written and fsync'ed, then the buffer is sent. So a client that
// saw an answer knows the call is in the log.
//
// While the log cannot be written (Ready fails) every mutating call is
// refused with 503 audit_unavailable before next runs, so that nothing
// changes unaudited. The call in flight when the disk fails has changed
// something already: it is answered 500 audit_unavailable, with the status
// next gave it, and its line waits in memory for the disk (and goes to
// Report).
//
// Calls that establish no credential (401, or a path no route matched
// before authentication) are not recorded: they change nothing and name no
// one, and a flood of them would rotate the real lines away. So the
// authenticating middleware calls WithActor as soon as it knows the
// credential, before it authorizes, and a refusal (403) is recorded too.
func (l *Log) Middleware(next http.Handler, cfg MiddlewareConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !mutating(r.Method) || !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		if err := l.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the audit log cannot be written, so changes are refused: %v", err))
			return
		}
		ctx, n := withNote(r.Context())
		r = r.WithContext(ctx)
		buf := &bufferedResponse{header: w.Header(), code: http.StatusOK}
		next.ServeHTTP(buf, r)
		ns, object := objectOf(r.URL.Path)
		e := Event{
			Namespace: ns,
			Verb:      verbOf(r.Method),
			Object:    object,
			Status:    buf.code,
			RequestID: r.Header.Get("X-Request-Id"),
		}
		if buf.code >= 400 {
			var body api.ErrorBody
			if json.Unmarshal(buf.body.Bytes(), &body) == nil {
				e.Code = body.Error.Code
			}
		}
		n.apply(&e)
		if e.TokenID == "" {
			buf.sendTo(w)
			return
		}
		if err := l.Record(ctx, e); err != nil {
			if cfg.Report != nil {
				cfg.Report(e, err)
			}
			for k := range w.Header() {
				delete(w.Header(), k)
			}
			writeError(w, http.StatusInternalServerError, fmt.Sprintf(
				"the request was carried out (status %d) but its audit line could not be written: %v; changes are refused until the audit log is writable", buf.code, err))
			return
		}
		buf.sendTo(w)
	})
}

func mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func verbOf(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodDelete:
		return "delete"
	default:
		return "update"
	}
}

// namespacedRoots are the collections whose paths outside
// /v1/namespaces/{ns}/ mean the default namespace.
var namespacedRoots = map[string]bool{"functions": true, "secrets": true, "jobs": true}

// objectOf splits an API path into its namespace and its object path:
// /v1/namespaces/team-a/functions/hello is (team-a, functions/hello),
// /v1/namespaces/team-a is (team-a, namespaces/team-a), /v1/functions/hello
// is (default, functions/hello) and /v1/images is ("", images).
func objectOf(path string) (ns, object string) {
	rest := strings.Trim(strings.TrimPrefix(path, "/v1/"), "/")
	parts := strings.SplitN(rest, "/", 3)
	switch {
	case parts[0] == "namespaces" && len(parts) == 2:
		return parts[1], rest
	case parts[0] == "namespaces" && len(parts) == 3:
		return parts[1], parts[2]
	case namespacedRoots[parts[0]]:
		return api.DefaultNamespace, rest
	}
	return "", rest
}

// bufferedResponse holds an answer until its audit line is on disk. The
// header map is the real one: nothing is sent before WriteHeader.
type bufferedResponse struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

// WriteHeader keeps the first status, as net/http does.
func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wroteHeader {
		b.code, b.wroteHeader = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wroteHeader = true
	return b.body.Write(p)
}

func (b *bufferedResponse) sendTo(w http.ResponseWriter) {
	w.WriteHeader(b.code)
	_, _ = w.Write(b.body.Bytes())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeAuditUnavailable, Message: msg}})
}
