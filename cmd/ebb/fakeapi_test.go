package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// t0 is when the fake API's clock starts; testNow is the CLI's "now", so
// ages in golden files are stable.
var (
	t0      = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	testNow = t0.Add(90 * time.Minute)
)

// fakeAPI is a hand-written stand-in for the control plane, faithful to the
// contract in shape (routes, status codes, error envelope, strict decoding,
// revisions on spec change, traffic validation) but with scripted status:
// progress decides what the latest revision reports on each read. It exists
// to test the CLI's own logic; the end-to-end test runs against real ebbd.
type fakeAPI struct {
	t     *testing.T
	token string
	url   string

	mu sync.Mutex
	// fns by qualified name (api.QualifiedName), as the store keys them.
	fns map[string]*fakeFn
	// namespaces by name; default exists from the start.
	namespaces map[string]api.Namespace
	// deleteRefused makes a namespace delete without force answer 409.
	deleteRefused bool
	images        []api.Image
	nodes         []api.Node
	logs          string
	logQuery      string
	// progress sets the latest revision's status on its polls-th read.
	progress func(function string, rs *api.RevisionStatus, polls int)
	// failNext answers the next /v1 request with this status, once.
	failNext int
	// secrets are the secret objects by namespace/name (secrets_test.go).
	secrets map[string]map[string][]byte
	// applyBody and applyQuery are the last POST .../apply's; applyRefuse
	// fails the documents it names with its message (apply_test.go).
	applyBody, applyQuery string
	applyRefuse           map[string]string
	// invocations by qualified function name, oldest first
	// (invocations_test.go).
	invocations map[string][]*fakeInvocation
	// cron are the cron triggers by namespace/function/name (cron_test.go).
	cron map[string]*api.CronTrigger
	// domains are the domain mappings by host (domains_test.go).
	domains map[string]api.Domain
	// jobs by namespace/name (job_manifest_test.go).
	jobs map[string]api.Job
}

type fakeFn struct {
	fn    api.Function
	revs  []api.Revision
	user  []api.TrafficTarget // traffic as set; nil means 100% to latest
	polls int
	// rollouts, newest first (rollout_test.go).
	rollouts []*fakeRollout
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, token: "tok-123", fns: map[string]*fakeFn{}, progress: startsNormally,
		namespaces: map[string]api.Namespace{api.DefaultNamespace: {Name: api.DefaultNamespace}}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images", f.pushImage)
	mux.HandleFunc("GET /v1/images", f.listImages)
	// Like the control plane, each function route is served for default
	// at /v1/... and for any namespace at /v1/namespaces/{ns}/....
	namespaced := func(method, suffix string, h http.HandlerFunc) {
		mux.HandleFunc(method+" /v1"+suffix, h)
		mux.HandleFunc(method+" /v1/namespaces/{ns}"+suffix, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			_, ok := f.namespaces[r.PathValue("ns")]
			f.mu.Unlock()
			if !ok {
				writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("namespace %q does not exist", r.PathValue("ns")))
				return
			}
			h(w, r)
		})
	}
	namespaced("GET", "/functions", f.listFunctions)
	namespaced("PUT", "/functions/{name}", f.putFunction)
	namespaced("GET", "/functions/{name}", f.getFunction)
	namespaced("DELETE", "/functions/{name}", f.deleteFunction)
	namespaced("GET", "/functions/{name}/revisions", f.listRevisions)
	namespaced("PUT", "/functions/{name}/traffic", f.setTraffic)
	namespaced("GET", "/functions/{name}/logs", f.getLogs)
	namespaced("GET", "/functions/{name}/rollouts", f.listRollouts) // rollout_test.go
	namespaced("GET", "/functions/{name}/rollouts/{id}", f.getRollout)
	namespaced("POST", "/functions/{name}/rollouts/{id}/{action}", f.rolloutAction)
	namespaced("POST", "/apply", f.apply)                                   // apply_test.go
	namespaced("GET", "/functions/{name}/crontriggers", f.listCronTriggers) // cron_test.go
	namespaced("PUT", "/functions/{name}/crontriggers/{trigger}", f.putCronTrigger)
	namespaced("GET", "/functions/{name}/crontriggers/{trigger}", f.getCronTrigger)
	namespaced("DELETE", "/functions/{name}/crontriggers/{trigger}", f.deleteCronTrigger)
	namespaced("POST", "/functions/{name}/crontriggers/{trigger}/run", f.runCronTrigger)
	// invocations_test.go
	namespaced("POST", "/functions/{name}/invocations", f.submitInvocation)
	namespaced("GET", "/functions/{name}/invocations", f.listInvocations)
	namespaced("GET", "/functions/{name}/invocations/{id}", f.getInvocation)
	namespaced("GET", "/jobs/{name}", f.getJob) // job_manifest_test.go
	namespaced("DELETE", "/jobs/{name}", f.deleteJob)
	namespaced("GET", "/secrets", f.listSecrets)
	namespaced("PUT", "/secrets/{name}", f.putSecret)
	namespaced("DELETE", "/secrets/{name}", f.deleteSecret)
	mux.HandleFunc("POST /v1/secrets/rotate-key", f.rotateKey)
	namespaced("GET", "/domains", f.listDomains) // domains_test.go
	namespaced("PUT", "/domains/{host}", f.putDomain)
	namespaced("DELETE", "/domains/{host}", f.deleteDomain)
	mux.HandleFunc("GET /v1/namespaces", f.listNamespaces)
	mux.HandleFunc("PUT /v1/namespaces/{ns}", f.putNamespace)
	mux.HandleFunc("GET /v1/namespaces/{ns}", f.getNamespace) // apply_test.go
	mux.HandleFunc("DELETE /v1/namespaces/{ns}", f.deleteNamespace)
	mux.HandleFunc("GET /v1/namespaces/{ns}/quota", f.getQuota) // quota_test.go
	mux.HandleFunc("PUT /v1/namespaces/{ns}/quota", f.putQuota)
	mux.HandleFunc("GET /v1/nodes", f.listNodes)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			writeErr(w, 401, api.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		f.mu.Lock()
		fail := f.failNext
		f.failNext = 0
		f.mu.Unlock()
		if fail != 0 {
			writeErr(w, fail, api.CodeInternal, "store unavailable")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f, srv
}

// startsNormally: no desired count yet, then asked for one replica, then ready.
func startsNormally(_ string, rs *api.RevisionStatus, polls int) {
	switch {
	case polls == 0:
		rs.State, rs.Desired, rs.Ready = api.RevisionScaling, 0, 0
	case polls == 1:
		rs.State, rs.Desired, rs.Ready = api.RevisionScaling, 1, 0
	default:
		rs.State, rs.Desired, rs.Ready = api.RevisionReady, 1, 1
	}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func writeOK(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) pushImage(w http.ResponseWriter, r *http.Request) {
	// The real gate: a malformed archive from the CLI fails here too.
	a, err := ociimage.Spool(r.Body, f.t.TempDir(), ociimage.Limits{})
	if err != nil {
		var ae *ociimage.ArchiveError
		if errors.As(err, &ae) {
			writeErr(w, 400, api.CodeInvalidArchive, err.Error())
			return
		}
		writeErr(w, 500, api.CodeInternal, err.Error())
		return
	}
	defer a.Remove()
	if len(a.Images) == 0 {
		writeErr(w, 400, api.CodeInvalidArchive, "the archive names no image")
		return
	}
	// Digest and size come from the name, not the bytes, so golden files do
	// not change whenever ociimage's output does.
	sum := sha256.Sum256([]byte(a.Images[0].Name))
	img := api.Image{Name: a.Images[0].Name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(a.Images[0].Name)) << 20}
	f.mu.Lock()
	f.images = append(f.images, img)
	f.mu.Unlock()
	writeOK(w, 201, img)
}

func (f *fakeAPI) listImages(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeOK(w, 200, map[string][]api.Image{"images": f.images})
}

// namespaceOf is the namespace a request addresses.
func namespaceOf(r *http.Request) string {
	if ns := r.PathValue("ns"); ns != "" {
		return ns
	}
	return api.DefaultNamespace
}

// lookup finds the function a request names; the name it returns is the
// qualified one.
func (f *fakeAPI) lookup(w http.ResponseWriter, r *http.Request) (*fakeFn, string, bool) {
	name := api.QualifiedName(namespaceOf(r), r.PathValue("name"))
	ff, ok := f.fns[name]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("function %q does not exist", r.PathValue("name")))
	}
	return ff, name, ok
}

func (f *fakeAPI) putFunction(w http.ResponseWriter, r *http.Request) {
	ns, bare := namespaceOf(r), r.PathValue("name")
	if err := api.ValidateQualified(ns, bare); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	body, _ := io.ReadAll(r.Body)
	spec, err := api.DecodeSpec(body)
	if err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, exists, _ := f.putSpecLocked(ns, bare, spec)
	status := 200
	if !exists {
		status = 201
	}
	writeOK(w, status, f.view(ff))
}

// putSpecLocked stores spec as function ns/bare's, with a new revision
// when it changed. f.mu is held.
func (f *fakeAPI) putSpecLocked(ns, bare string, spec api.FunctionSpec) (ff *fakeFn, existed, changed bool) {
	name := api.QualifiedName(ns, bare)
	ff, exists := f.fns[name]
	if exists && reflect.DeepEqual(ff.fn.Spec, spec) {
		return ff, true, false
	}
	if !exists {
		ff = &fakeFn{fn: api.Function{Name: bare, Namespace: ns, URL: "http://" + name + ".localhost:8080", CreatedAt: t0}}
		f.fns[name] = ff
	}
	gen := len(ff.revs) + 1
	created := t0.Add(time.Duration(gen) * 10 * time.Minute)
	rev := api.RevisionName(name, gen)
	ff.revs = append(ff.revs, api.Revision{Name: rev, Function: bare, Namespace: ns, Spec: spec,
		Status: api.RevisionStatus{Name: rev, Generation: gen, Image: spec.Image, CreatedAt: created}})
	ff.fn.Spec, ff.fn.LatestRevision, ff.fn.UpdatedAt, ff.polls = spec, rev, created, 0
	ff.fn.Labels = spec.Labels
	return ff, exists, true
}

// view renders the status document: traffic resolved and every revision's
// share of it, older revisions idle.
func (f *fakeAPI) view(ff *fakeFn) api.Function {
	fn := ff.fn
	// Like the control plane, never echo secret values.
	if len(fn.Spec.Secrets) > 0 {
		secrets := append([]api.Secret(nil), fn.Spec.Secrets...)
		for i := range secrets {
			secrets[i].Value = ""
		}
		fn.Spec.Secrets = secrets
	}
	user := ff.user
	if user == nil {
		user = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
	}
	percent := map[string]int{}
	tags := map[string][]string{}
	fn.Traffic = nil
	for _, t := range user {
		rev := t.Revision
		if t.LatestRevision {
			rev = fn.LatestRevision
		}
		percent[rev] += t.Percent
		if t.Tag != "" {
			t.URL = "http://" + t.Tag + "-" + api.QualifiedName(fn.Namespace, fn.Name) + ".localhost:8080"
			tags[rev] = append(tags[rev], t.Tag)
		}
		fn.Traffic = append(fn.Traffic, t)
	}
	fn.Revisions = nil
	for i := len(ff.revs) - 1; i >= 0; i-- {
		rs := ff.revs[i].Status
		if rs.State == "" {
			rs.State = api.RevisionIdle
		}
		rs.Percent, rs.Tags = percent[rs.Name], tags[rs.Name]
		fn.Revisions = append(fn.Revisions, rs)
	}
	return fn
}

func (f *fakeAPI) getFunction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, _, ok := f.lookup(w, r)
	if !ok {
		return
	}
	latest := &ff.revs[len(ff.revs)-1].Status
	f.progress(ff.fn.Name, latest, ff.polls)
	ff.polls++
	writeOK(w, 200, f.view(ff))
}

func (f *fakeAPI) listFunctions(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("watch") == "true" {
		f.watchFunctions(w, r) // apply_test.go
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := api.FunctionList{Functions: []api.Function{}}
	for _, ff := range f.fns {
		if ff.fn.Namespace == namespaceOf(r) {
			out.Functions = append(out.Functions, f.view(ff))
		}
	}
	// Unordered on purpose: the CLI sorts.
	sort.Slice(out.Functions, func(i, j int) bool { return out.Functions[i].Name > out.Functions[j].Name })
	writeOK(w, 200, out)
}

func (f *fakeAPI) deleteFunction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, name, ok := f.lookup(w, r); ok {
		delete(f.fns, name)
		w.WriteHeader(204)
	}
}

func (f *fakeAPI) listRevisions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, _, ok := f.lookup(w, r)
	if !ok {
		return
	}
	statuses := map[string]api.RevisionStatus{}
	for _, rs := range f.view(ff).Revisions {
		statuses[rs.Name] = rs
	}
	out := api.RevisionList{}
	for _, rev := range ff.revs {
		rev.Status = statuses[rev.Name]
		out.Revisions = append(out.Revisions, rev)
	}
	writeOK(w, 200, out)
}

func (f *fakeAPI) setTraffic(w http.ResponseWriter, r *http.Request) {
	var req api.TrafficRequest
	if err := api.DecodeStrict(r.Body, &req); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, _, ok := f.lookup(w, r)
	if !ok {
		return
	}
	exists := func(rev string) bool {
		for _, r := range ff.revs {
			if r.Name == rev {
				return true
			}
		}
		return false
	}
	if err := api.ValidateTraffic(req.Traffic, exists); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	ff.user = req.Traffic
	writeOK(w, 200, f.view(ff))
}

func (f *fakeAPI) getLogs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, _, ok := f.lookup(w, r); !ok {
		return
	}
	f.logQuery = r.URL.RawQuery
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, f.logs)
}

func (f *fakeAPI) listNamespaces(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := api.NamespaceList{Namespaces: []api.Namespace{}}
	for _, ns := range f.namespaces {
		for _, ff := range f.fns {
			if ff.fn.Namespace == ns.Name {
				ns.Functions++
			}
		}
		out.Namespaces = append(out.Namespaces, ns)
	}
	// Unordered on purpose: the CLI sorts.
	sort.Slice(out.Namespaces, func(i, j int) bool { return out.Namespaces[i].Name > out.Namespaces[j].Name })
	writeOK(w, 200, out)
}

func (f *fakeAPI) putNamespace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ns")
	if err := api.ValidateName("namespace", name); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	var spec api.NamespaceSpec
	if err := api.DecodeStrict(r.Body, &spec); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns, ok := f.namespaces[name]; ok {
		writeOK(w, 200, ns)
		return
	}
	ns := api.Namespace{Name: name, Quota: spec.Quota, CreatedAt: t0.Add(time.Hour)}
	f.namespaces[name] = ns
	writeOK(w, 201, ns)
}

func (f *fakeAPI) deleteNamespace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ns")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch _, ok := f.namespaces[name]; {
	case name == api.DefaultNamespace:
		writeErr(w, 400, api.CodeInvalid, "namespace: the default namespace cannot be deleted")
		return
	case !ok:
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("namespace %q does not exist", name))
		return
	case f.deleteRefused && r.URL.Query().Get("force") != "true":
		writeErr(w, 409, api.CodeConflict, fmt.Sprintf("namespace %q has functions with ready replicas (hello)", name))
		return
	}
	delete(f.namespaces, name)
	for q, ff := range f.fns {
		if ff.fn.Namespace == name {
			delete(f.fns, q)
		}
	}
	w.WriteHeader(204)
}

func (f *fakeAPI) listNodes(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeOK(w, 200, map[string][]api.Node{"nodes": f.nodes})
}

// scripted returns a progress func that plays states for one function and
// lets others start normally.
func scripted(function string, states ...api.RevisionStatus) func(string, *api.RevisionStatus, int) {
	return func(fn string, rs *api.RevisionStatus, polls int) {
		if fn != function {
			startsNormally(fn, rs, polls)
			return
		}
		s := states[min(polls, len(states)-1)]
		rs.State, rs.Desired, rs.Ready, rs.Message = s.State, s.Desired, s.Ready, s.Message
		rs.Restarts, rs.LastExitCode, rs.LastLogLines = s.Restarts, s.LastExitCode, s.LastLogLines
	}
}

func (f *fakeAPI) functionSpec(name string) api.FunctionSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fns[name].fn.Spec
}

func (f *fakeAPI) revisionNames(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.fns[name].revs {
		out = append(out, r.Name)
	}
	return out
}

func (f *fakeAPI) imageList() []api.Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Image(nil), f.images...)
}
