package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func (f *fakeAPI) getQuota(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.namespaces[r.PathValue("ns")]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("namespace %q does not exist", r.PathValue("ns")))
		return
	}
	writeOK(w, 200, ns.Quota)
}

func (f *fakeAPI) putQuota(w http.ResponseWriter, r *http.Request) {
	var q api.Quota
	if err := api.DecodeStrict(r.Body, &q); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	if err := q.Validate(); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.namespaces[r.PathValue("ns")]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("namespace %q does not exist", r.PathValue("ns")))
		return
	}
	ns.Quota = q
	f.namespaces[ns.Name] = ns
	writeOK(w, 200, q)
}

// quotaOf reads a namespace's quota as the fake API holds it; ok is false
// when the namespace does not exist.
func (f *fakeAPI) quotaOf(ns string) (q api.Quota, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.namespaces[ns]
	return n.Quota, ok
}

func (f *fakeAPI) quota(ns string) api.Quota {
	q, _ := f.quotaOf(ns)
	return q
}

// TestNamespaceQuota: a quota set at creation, shown, changed cap by cap
// (0 removes one), and bad values refused before any call.
func TestNamespaceQuota(t *testing.T) {
	c, f := newCLI(t)
	r := c.run(t, "namespaces", "create", "team-a", "--max-replicas", "2", "--max-memory", "1Gi", "--max-cpu", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created namespace team-a\n", r.stdout)
	assert.Equal(t, api.Quota{Replicas: 2, Memory: "1Gi", CPU: 2}, f.quota("team-a"))

	r = c.run(t, "ns", "quota", "team-a")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "NAMESPACE  FUNCTIONS  REPLICAS  MEMORY  CPU  SECRETS\nteam-a     -          2         1Gi     2    -\n", r.stdout)

	r = c.run(t, "namespaces", "quota", "team-a", "--max-functions", "5", "--max-cpu", "0", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var q api.Quota
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &q))
	assert.Equal(t, api.Quota{Functions: 5, Replicas: 2, Memory: "1Gi"}, q, "the caps not given are kept; 0 removes one")
	assert.Equal(t, q, f.quota("team-a"))

	r = c.run(t, "namespaces", "quota", "team-a", "--max-memory", "0")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, api.Quota{Functions: 5, Replicas: 2}, f.quota("team-a"))

	// Creating it again changes nothing, and says so.
	r = c.run(t, "namespaces", "create", "team-a", "--max-replicas", "9")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "its quota is unchanged")
	assert.Equal(t, 2, f.quota("team-a").Replicas)

	for _, args := range [][]string{
		{"namespaces", "quota", "team-a", "--max-replicas", "-1"},
		{"namespaces", "quota", "team-a", "--max-memory", "lots"},
		{"namespaces", "quota", "team-a", "--max-cpu", "-0.5"},
		{"namespaces", "quota", "team-a", "--max-replicas", "two"},
		{"namespaces", "create", "team-b", "--max-functions", "-4"},
		{"namespaces", "quota", "Team_A"},
		{"namespaces", "quota"},
	} {
		r = c.run(t, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
	assert.Equal(t, api.Quota{Functions: 5, Replicas: 2}, f.quota("team-a"), "unchanged")
	_, created := f.quotaOf("team-b")
	assert.False(t, created)

	r = c.run(t, "namespaces", "quota", "nosuch")
	assert.Equal(t, 3, r.code, r.stderr)
}
