package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// fakeInvocation is an invocation the fake API holds; it becomes
// Succeeded on its finishAfter-th read (0: never).
type fakeInvocation struct {
	inv         api.Invocation
	reads       int
	finishAfter int
}

func (f *fakeAPI) submitInvocation(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, name, ok := f.lookup(w, r)
	if !ok {
		return
	}
	opts, err := api.ParseInvocationOptions(r.Header.Get)
	if err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	for _, fi := range f.invocations[name] {
		if opts.IdempotencyKey != "" && fi.inv.IdempotencyKey == opts.IdempotencyKey {
			writeOK(w, http.StatusOK, fi.inv.Public())
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	path := "/"
	if r.URL.Query().Has("path") {
		path = r.URL.Query().Get("path")
	}
	if f.invocations == nil {
		f.invocations = map[string][]*fakeInvocation{}
	}
	req := api.InvocationRequest{Method: "POST", Path: path, Body: body, Header: http.Header{}}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	inv := api.NewInvocation(name, req, opts, testNow.Add(-time2s))
	inv.ID = fmt.Sprintf("%032x", len(f.invocations[name])+1)
	f.invocations[name] = append(f.invocations[name], &fakeInvocation{inv: inv, finishAfter: 3})
	w.Header().Set("Location", api.InvocationLocation(name, inv.ID))
	writeOK(w, http.StatusAccepted, inv.Public())
}

func (f *fakeAPI) listInvocations(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, name, ok := f.lookup(w, r)
	if !ok {
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	out := api.InvocationList{Items: []api.Invocation{}}
	list := f.invocations[name]
	for i := len(list) - 1; i >= 0 && len(out.Items) < limit; i-- {
		out.Items = append(out.Items, list[i].inv.Public())
	}
	writeOK(w, http.StatusOK, out)
}

func (f *fakeAPI) getInvocation(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, name, ok := f.lookup(w, r)
	if !ok {
		return
	}
	for _, fi := range f.invocations[name] {
		if fi.inv.ID != r.PathValue("id") {
			continue
		}
		fi.reads++
		if fi.reads == fi.finishAfter {
			fi.inv.Status, fi.inv.Attempts, fi.inv.CompletedAt = api.InvocationSucceeded, 1, testNow
			fi.inv.Result = &api.InvocationResult{Status: 200, Body: []byte("done: " + string(fi.inv.Request.Body))}
		}
		writeOK(w, http.StatusOK, fi.inv.Public())
		return
	}
	writeErr(w, 404, api.CodeNotFound, "no such invocation")
}

const time2s = 2 * time.Second

func TestInvocations(t *testing.T) {
	c, f := newCLI(t)
	require.Equal(t, 0, c.run(t, "deploy", "hello", "--image", "hello:latest").code)
	payload := filepath.Join(t.TempDir(), "payload.json")
	require.NoError(t, os.WriteFile(payload, []byte(`{"n":1}`), 0o600))

	r := c.run(t, "invocations", "submit", "hello", "--data", "@"+payload, "--content-type", "application/json",
		"--path", "/jobs", "--callback", "http://127.0.0.1:9/cb", "--idempotency-key", "k1", "--max-attempts", "3")
	require.Equal(t, 0, r.code, r.stderr)
	id := strings.TrimSpace(r.stdout)
	require.True(t, api.ValidInvocationID(id), r.stdout)
	inv := f.invocations["hello"][0].inv
	assert.Equal(t, `{"n":1}`, string(inv.Request.Body))
	assert.Equal(t, "/jobs", inv.Request.Path)
	assert.Equal(t, "application/json", inv.Request.Header.Get("Content-Type"))
	assert.Equal(t, "http://127.0.0.1:9/cb", inv.CallbackURL)
	assert.Equal(t, 3, inv.MaxAttempts)

	r = c.run(t, "invocations", "submit", "hello", "--idempotency-key", "k1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, id+" (submitted before with this idempotency key; Queued)\n", r.stdout)

	c.stdin = "from stdin"
	r = c.run(t, "inv", "submit", "hello", "-d", "@-")
	require.Equal(t, 0, r.code, r.stderr)
	second := strings.TrimSpace(r.stdout)
	assert.Equal(t, "from stdin", string(f.invocations["hello"][1].inv.Request.Body))

	r = c.run(t, "invocations", "list", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "ID                                STATUS  ATTEMPTS  RESULT  AGE\n"+
		second+"  Queued  0/5       -       2s\n"+
		id+"  Queued  0/3       -       2s\n", r.stdout)

	r = c.run(t, "invocations", "get", "hello", id, "--wait")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 3, f.invocations["hello"][0].reads, "polled until final")
	line := func(k, v string) string { return fmt.Sprintf("%-12s%s\n", k+":", v) }
	assert.Equal(t, line("ID", id)+
		line("Function", "hello")+
		line("Status", "Succeeded")+
		line("Attempts", "1/3")+
		line("Request", "POST /jobs (7 bytes)")+
		line("Created", testNow.Add(-time2s).UTC().Format(time.RFC3339)+" (2s ago)")+
		line("Completed", testNow.UTC().Format(time.RFC3339))+
		line("Callback", "http://127.0.0.1:9/cb (-)")+
		line("Result", "200 OK")+
		line("Body", "(13 bytes)")+
		`done: {"n":1}`+"\n", r.stdout)

	r = c.run(t, "invocations", "get", "hello", second, "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var got api.Invocation
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &got))
	assert.Equal(t, api.InvocationQueued, got.Status)
}

func TestInvocationsBadInput(t *testing.T) {
	c, _ := newCLI(t)
	require.Equal(t, 0, c.run(t, "deploy", "hello", "--image", "hello:latest").code)
	big := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.WriteFile(big, make([]byte, api.MaxInvocationBody+1), 0o600))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"invocations", "submit"}, "missing FN"},
		{[]string{"invocations", "submit", "Bad_Name"}, "function name"},
		{[]string{"invocations", "submit", "hello", "--callback", "ftp://x/"}, api.HeaderCallbackURL},
		{[]string{"invocations", "submit", "hello", "--max-attempts", "0"}, "--max-attempts 0"},
		{[]string{"invocations", "submit", "hello", "--max-attempts", "-2"}, api.HeaderMaxAttempts},
		{[]string{"invocations", "submit", "hello", "--max-attempts", "500"}, api.HeaderMaxAttempts},
		{[]string{"invocations", "submit", "hello", "--path", "no-slash"}, "path"},
		{[]string{"invocations", "submit", "hello", "--data", "@/does/not/exist"}, "--data"},
		{[]string{"invocations", "submit", "hello", "--data", "@" + big}, "byte limit"},
		{[]string{"invocations", "list", "hello", "--limit", "-1"}, "--limit -1"},
		{[]string{"invocations", "get", "hello"}, "missing ID"},
		{[]string{"invocations", "get", "hello", "../../x"}, "not an invocation id"},
		{[]string{"invocations", "get", "hello", strings.Repeat("a", 32), "--wait", "--timeout", "0s"}, "--timeout 0s"},
	} {
		r := c.run(t, tt.args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", tt.args, r.stderr)
		oneErrorLine(t, r, tt.want)
	}
	r := c.run(t, "invocations", "get", "hello", strings.Repeat("a", 32))
	assert.Equal(t, exitNotFound, r.code)
	r = c.run(t, "invocations", "list", "nope")
	assert.Equal(t, exitNotFound, r.code)
}
