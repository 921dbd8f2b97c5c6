package main

import (
	"net/http"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// The fake API's domain mappings, by host, with the control plane's one
// owner per host.

func (f *fakeAPI) putDomain(w http.ResponseWriter, r *http.Request) {
	ns, host := nsOf(r), r.PathValue("host")
	var spec api.DomainSpec
	if err := api.DecodeStrict(r.Body, &spec); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.domains == nil {
		f.domains = map[string]api.Domain{}
	}
	old, exists := f.domains[host]
	if exists && old.Namespace != ns {
		writeErr(w, 409, api.CodeConflict, "domain "+host+" is owned by namespace \""+old.Namespace+"\"; delete it there first")
		return
	}
	d := api.Domain{Host: host, Namespace: ns, Function: spec.Function, Redirect: spec.Redirect, CreatedAt: t0, UpdatedAt: t0}
	f.domains[host] = d
	status := 201
	if exists {
		status = 200
	}
	writeOK(w, status, d)
}

func (f *fakeAPI) listDomains(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := api.DomainList{Domains: []api.Domain{}}
	for _, d := range f.domains {
		if d.Namespace == nsOf(r) {
			list.Domains = append(list.Domains, d)
		}
	}
	sort.Slice(list.Domains, func(i, j int) bool { return list.Domains[i].Host < list.Domains[j].Host })
	writeOK(w, 200, list)
}

func (f *fakeAPI) deleteDomain(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.domains[host]; !ok || d.Namespace != nsOf(r) {
		writeErr(w, 404, api.CodeNotFound, "domain "+host+" is not mapped in namespace "+nsOf(r))
		return
	}
	delete(f.domains, host)
	w.WriteHeader(http.StatusNoContent)
}

func TestDomainsCommands(t *testing.T) {
	c, f := newCLI(t)
	r := c.run(t, "domains", "add", "API.example.com", "--function", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "added domain api.example.com -> function hello in namespace default\n", r.stdout)
	assert.Equal(t, "hello", f.domains["api.example.com"].Function)

	r = c.run(t, "domains", "add", "www.example.com", "--function", "hello", "--redirect")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, f.domains["www.example.com"].Redirect)

	require.Equal(t, 0, c.run(t, "namespaces", "create", "team-a").code)
	r = c.run(t, "-n", "team-a", "domains", "add", "api.example.com", "--function", "hello")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, `owned by namespace "default"`)

	r = c.run(t, "domains", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, `HOST             FUNCTION  REDIRECT  AGE
api.example.com  hello     -         `+age(testNow, t0)+`
www.example.com  hello     https     `+age(testNow, t0)+`
`, r.stdout)
	r = c.run(t, "-o", "json", "-n", "team-a", "domains", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"domains":[]}`, r.stdout)

	r = c.run(t, "domains", "delete", "api.example.com")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted domain api.example.com\n", r.stdout)
	assert.NotContains(t, f.domains, "api.example.com")

	for _, bad := range [][]string{
		{"domains", "add", "api.example.com"},
		{"domains", "add", "127.0.0.1", "--function", "hello"},
		{"domains", "add", "*.example.com", "--function", "hello"},
		{"domains", "add", "localhost", "--function", "hello"},
		{"domains", "add", "api.example.com", "--function", "Bad_Name"},
		{"domains", "delete", "[::1]"},
		{"domains", "delete"},
	} {
		r = c.run(t, bad...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}
}
