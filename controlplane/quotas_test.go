package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// TestStatusSaysWhyTheQuotaClipped: the autoscaler's reason in scales/{rev}
// reaches the revision's status message, with its demand.
func TestStatusSaysWhyTheQuotaClipped(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	_, err := a.store.Txn(context.Background(),
		store.PutJSON(store.ScaleKey("hello-00001"), store.Scale{
			Revision: "hello-00001", Desired: 2, Wanted: 5, Clipped: "clipped by namespace quota: replicas 2 of 2",
		}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("hello-00001", "r1"), store.Endpoint{Revision: "hello-00001", Replica: "r1"}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("hello-00001", "r2"), store.Endpoint{Revision: "hello-00001", Replica: "r2"}, store.AnyVersion),
	)
	require.NoError(t, err)
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	rev := fn.Revisions[0]
	assert.Equal(t, api.RevisionReady, rev.State, "it runs what it may")
	assert.Equal(t, "clipped by namespace quota: replicas 2 of 2; demand 5 replicas, runs 2", rev.Message)

	// Beside a node's message, both are said.
	_, err = a.store.Txn(context.Background(),
		store.PutJSON(store.RevStatusKey("hello-00001", "n1"), store.RevisionNodeStatus{
			Revision: "hello-00001", Node: "n1", State: api.RevisionCrashLoop, Ready: 1, Message: "exited with 2",
		}, store.AnyVersion))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Equal(t, "exited with 2; clipped by namespace quota: replicas 2 of 2; demand 5 replicas, runs 2", fn.Revisions[0].Message)
}

// deployIn PUTs a function in namespace ns and returns the status code and
// the error envelope, if any.
func (a *testAPI) deployIn(ns, fn, spec string) (int, api.ErrorBody) {
	a.t.Helper()
	var e api.ErrorBody
	var out any = &e
	code := a.do("PUT", "/v1/namespaces/"+ns+"/functions/"+fn, spec, nil)
	if code >= 400 {
		code = a.do("PUT", "/v1/namespaces/"+ns+"/functions/"+fn, spec, out)
	}
	return code, e
}

func (a *testAPI) countKeys(prefix string) int {
	a.t.Helper()
	kvs, _, err := a.store.List(context.Background(), prefix)
	require.NoError(a.t, err)
	return len(kvs)
}

// TestQuotaAdmission: a deploy that would take a namespace past its quota
// is refused with 403 quota_exceeded and the numbers, and writes nothing.
func TestQuotaAdmission(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var ns api.Namespace
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a",
		`{"quota":{"functions":3,"replicas":2,"memory":"1Gi","cpu":2}}`, &ns))
	assert.Equal(t, api.Quota{Functions: 3, Replicas: 2, Memory: "1Gi", CPU: 2}, ns.Quota)
	var q api.Quota
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/quota", "", &q))
	assert.Equal(t, ns.Quota, q)

	code, _ := a.deployIn("team-a", "one", `{"image":"hello:latest","scale":{"min":1}}`)
	require.Equal(t, http.StatusCreated, code)
	code, _ = a.deployIn("team-a", "two", `{"image":"hello:latest"}`) // initial 1
	require.Equal(t, http.StatusCreated, code)
	code, _ = a.deployIn("team-a", "two", `{"image":"hello:latest","scale":{"min":1}}`) // reserves what it asked
	require.Equal(t, http.StatusOK, code)
	functions, revisions := a.countKeys(store.PrefixFunctions), a.countKeys(store.PrefixRevisions)

	tests := []struct {
		name, fn, spec string
		want           api.QuotaExceeded
		msg            string
	}{
		{
			name: "a third function's initial replica", fn: "three", spec: `{"image":"hello:latest"}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "replicas", Unit: "replicas", Limit: 2, Used: 2, Wants: 1},
			msg:  "namespace team-a: replicas 2 of 2 used, deploy wants 1 more",
		},
		{
			name: "raising a min scale", fn: "one", spec: `{"image":"hello:latest","scale":{"min":2}}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "replicas", Unit: "replicas", Limit: 2, Used: 1, Wants: 2},
			msg:  "namespace team-a: replicas 1 of 2 used, deploy wants 2 more",
		},
		{
			name: "an initial scale", fn: "one", spec: `{"image":"hello:latest","scale":{"min":1,"initial":3}}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "replicas", Unit: "replicas", Limit: 2, Used: 1, Wants: 3},
			msg:  "namespace team-a: replicas 1 of 2 used, deploy wants 3 more",
		},
		{
			name: "cpu", fn: "one", spec: `{"image":"hello:latest","scale":{"min":1},"resources":{"cpu":1.5}}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "cpu", Unit: "millicores", Limit: 2000, Used: 1000, Wants: 1500},
			msg:  "namespace team-a: cpu 1 of 2 used, deploy wants 1.5 more",
		},
		{
			name: "memory", fn: "one", spec: `{"image":"hello:latest","scale":{"min":1},"resources":{"memory":"900Mi"}}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "memory", Unit: "bytes", Limit: 1 << 30, Used: 256 << 20, Wants: 900 << 20},
			msg:  "namespace team-a: memory 256Mi of 1Gi used, deploy wants 900Mi more",
		},
		{
			name: "a replica bigger than the quota, even at zero", fn: "big", spec: `{"image":"hello:latest","scale":{"initial":0},"resources":{"memory":"2Gi"}}`,
			want: api.QuotaExceeded{Namespace: "team-a", Resource: "memory", Unit: "bytes", Limit: 1 << 30, Used: 0, Wants: 2 << 30},
			msg:  "namespace team-a: memory 0 of 1Gi used, one replica of the deploy wants 2Gi more",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, e := a.deployIn("team-a", tt.fn, tt.spec)
			require.Equal(t, http.StatusForbidden, code, e.Error.Message)
			assert.Equal(t, api.CodeQuotaExceeded, e.Error.Code)
			assert.Equal(t, tt.msg, e.Error.Message)
			require.NotNil(t, e.Error.Quota)
			assert.Equal(t, tt.want, *e.Error.Quota)
		})
	}
	assert.Equal(t, functions, a.countKeys(store.PrefixFunctions), "nothing written")
	assert.Equal(t, revisions, a.countKeys(store.PrefixRevisions), "nothing written")

	// At zero a third function fits the replicas; a fourth passes the
	// function count.
	code, _ = a.deployIn("team-a", "three", `{"image":"hello:latest","scale":{"initial":0}}`)
	require.Equal(t, http.StatusCreated, code)
	code, e := a.deployIn("team-a", "four", `{"image":"hello:latest","scale":{"initial":0}}`)
	require.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "namespace team-a: functions 3 of 3 used, deploy wants 1 more", e.Error.Message)
	// Re-applying the same spec is no change and is never refused.
	code, _ = a.deployIn("team-a", "one", `{"image":"hello:latest","scale":{"min":1}}`)
	assert.Equal(t, http.StatusOK, code)

	// The quota raised, the refused deploy goes through.
	var raised api.Quota
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/quota", `{"functions":4,"replicas":4}`, &raised))
	assert.Equal(t, api.Quota{Functions: 4, Replicas: 4}, raised, "a cap left out is no cap")
	code, _ = a.deployIn("team-a", "four", `{"image":"hello:latest"}`)
	assert.Equal(t, http.StatusCreated, code)
	// Another namespace is not affected by team-a's quota.
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	code, _ = a.deployIn("team-b", "big", `{"image":"hello:latest","scale":{"min":10}}`)
	assert.Equal(t, http.StatusCreated, code)
}

// TestDefaultNamespaceQuota: default has no record until its quota is set.
func TestDefaultNamespaceQuota(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	var q api.Quota
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/default/quota", "", &q))
	assert.Zero(t, q)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/default/quota", `{"functions":1}`, &q))
	var e api.ErrorBody
	require.Equal(t, http.StatusForbidden, a.do("PUT", "/v1/functions/other", `{"image":"hello:latest"}`, &e))
	assert.Equal(t, "namespace default: functions 1 of 1 used, deploy wants 1 more", e.Error.Message)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","scale":{"min":3}}`, nil),
		"hello is already counted, and replicas are not capped")
	// Lifting the quota.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/default/quota", `{}`, &q))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/other", `{"image":"hello:latest"}`, nil))
}

// TestQuotaBadInput: hostile quota fields are refused with 400 (or 413,
// 404) and change nothing.
func TestQuotaBadInput(t *testing.T) {
	a := newTestAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{"quota":{"replicas":2}}`, nil))
	tests := []struct {
		name, method, path, body string
		want                     int
		code                     string
	}{
		{"negative replicas", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":-1}`, 400, api.CodeInvalid},
		{"replicas past the bound", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":1000001}`, 400, api.CodeInvalid},
		{"replicas past int64", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":99999999999999999999999}`, 400, api.CodeInvalid},
		{"fractional replicas", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":1.5}`, 400, api.CodeInvalid},
		{"replicas as a string", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":"2"}`, 400, api.CodeInvalid},
		{"negative functions", "PUT", "/v1/namespaces/team-a/quota", `{"functions":-3}`, 400, api.CodeInvalid},
		{"negative secrets", "PUT", "/v1/namespaces/team-a/quota", `{"secrets":-1}`, 400, api.CodeInvalid},
		{"memory not a quantity", "PUT", "/v1/namespaces/team-a/quota", `{"memory":"lots"}`, 400, api.CodeInvalid},
		{"memory negative", "PUT", "/v1/namespaces/team-a/quota", `{"memory":"-1Gi"}`, 400, api.CodeInvalid},
		{"memory overflowing", "PUT", "/v1/namespaces/team-a/quota", `{"memory":"9223372036854775807Gi"}`, 400, api.CodeInvalid},
		{"memory as a number", "PUT", "/v1/namespaces/team-a/quota", `{"memory":1024}`, 400, api.CodeInvalid},
		{"memory with an unknown unit", "PUT", "/v1/namespaces/team-a/quota", `{"memory":"1Ti"}`, 400, api.CodeInvalid},
		{"cpu negative", "PUT", "/v1/namespaces/team-a/quota", `{"cpu":-2}`, 400, api.CodeInvalid},
		{"cpu below a millicore", "PUT", "/v1/namespaces/team-a/quota", `{"cpu":0.0001}`, 400, api.CodeInvalid},
		{"cpu past the bound", "PUT", "/v1/namespaces/team-a/quota", `{"cpu":1e7}`, 400, api.CodeInvalid},
		{"cpu past float64", "PUT", "/v1/namespaces/team-a/quota", `{"cpu":1e400}`, 400, api.CodeInvalid},
		{"unknown field", "PUT", "/v1/namespaces/team-a/quota", `{"replica":2}`, 400, api.CodeInvalid},
		{"trailing data", "PUT", "/v1/namespaces/team-a/quota", `{"replicas":2}{}`, 400, api.CodeInvalid},
		{"not an object", "PUT", "/v1/namespaces/team-a/quota", `[2]`, 400, api.CodeInvalid},
		{"body too large", "PUT", "/v1/namespaces/team-a/quota", `{"memory":"` + strings.Repeat("9", 5000) + `"}`, 413, api.CodeTooLarge},
		{"bad quota at creation", "PUT", "/v1/namespaces/team-b", `{"quota":{"replicas":-1}}`, 400, api.CodeInvalid},
		{"bad namespace name", "PUT", "/v1/namespaces/Team_A/quota", `{"replicas":2}`, 400, api.CodeInvalid},
		{"missing namespace", "PUT", "/v1/namespaces/nosuch/quota", `{"replicas":2}`, 404, api.CodeNotFound},
		{"missing namespace's quota", "GET", "/v1/namespaces/nosuch/quota", ``, 404, api.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			got := a.doRaw(tt.method, tt.path, "application/json", strings.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, got, "message: %s", e.Error.Message)
			assert.Equal(t, tt.code, e.Error.Code)
		})
	}
	var q api.Quota
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/quota", "", &q))
	assert.Equal(t, api.Quota{Replicas: 2}, q, "unchanged")
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/namespaces/team-b", "", nil), "not created")
}

// TestQuotaAdmissionUnderConcurrentDeploys: deploys racing into a capped
// namespace are admitted one at a time, so no race passes the cap. A
// deploy loses a race only to one that wrote, and only 3 can, so none runs
// out of its retries.
func TestQuotaAdmissionUnderConcurrentDeploys(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{"quota":{"functions":3,"replicas":5}}`, nil))
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest("PUT", fmt.Sprintf("%s/v1/namespaces/team-a/functions/f%d", a.url, i),
				strings.NewReader(`{"image":"hello:latest"}`))
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	assert.Equal(t, map[int]int{http.StatusCreated: 3, http.StatusForbidden: n - 3}, count)
	assert.Equal(t, 3, a.countKeys(store.PrefixFunctions))
}

// TestAdmitNewSecret: the secrets cap counts the objects under the
// namespace's prefix; replacing one adds nothing. (The secret objects'
// handlers call admitNew in their creating transaction.)
func TestAdmitNewSecret(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{"quota":{"secrets":2}}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", ``, nil))
	prefix := func(ns string) string { return "secrets/" + ns + "/" }
	create := func(ns, name string) error {
		ops, err := a.srv.admitNew(ctx, ns, quota.ResourceSecrets, prefix(ns), prefix(ns)+name)
		if err != nil {
			return err
		}
		_, err = a.store.Txn(ctx, append(ops, store.PutJSON(prefix(ns)+name, map[string]string{"name": name}, store.AnyVersion))...)
		return err
	}
	require.NoError(t, create("team-a", "one"))
	require.NoError(t, create("team-a", "two"))
	err := create("team-a", "three")
	var ex *quota.ExceededError
	require.ErrorAs(t, err, &ex)
	assert.Equal(t, "namespace team-a: secrets 2 of 2 used, create wants 1 more", err.Error())
	require.NoError(t, create("team-a", "two"), "replacing one adds nothing")
	for i := range 5 {
		require.NoError(t, create("team-b", fmt.Sprint("s", i)), "team-b has no quota")
	}
	// A racing write to the namespace record fails the creation's
	// transaction instead of letting it pass a cap it was not checked
	// against.
	ops, err := a.srv.admitNew(ctx, "team-a", quota.ResourceSecrets, prefix("team-a"), prefix("team-a")+"two")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/quota", `{"secrets":3}`, nil))
	_, err = a.store.Txn(ctx, ops...)
	assert.ErrorIs(t, err, store.ErrConflict)
}

// Job pods hold their namespace's quota at admission too: a deploy's
// replicas must fit beside the running pods, and a job whose one pod can
// never fit is refused, where one that fits later is created and waits.
func TestQuotaAdmissionCountsJobPods(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{"quota":{"replicas":2,"memory":"1Gi"}}`, nil))
	code, _ := a.deployIn("team-a", "one", `{"image":"hello:latest","scale":{"min":1}}`)
	require.Equal(t, http.StatusCreated, code)
	// A pod of a job of team-a, as the job controller placed it.
	_, err := a.store.Txn(context.Background(), store.PutJSON(store.JobPodKey("n1", "batch.team-a-0"),
		store.JobPod{Name: "batch.team-a-0", Job: "batch.team-a", Namespace: "team-a", Node: "n1", Spec: api.JobSpec{Image: "hello:latest"}.WithDefaults()},
		store.MustNotExist))
	require.NoError(t, err)

	var e api.ErrorBody
	code, _ = a.deployIn("team-a", "two", `{"image":"hello:latest"}`)
	assert.Equal(t, http.StatusForbidden, code, "the function's replica and the job's pod hold both")

	code = a.do("PUT", "/v1/namespaces/team-a/jobs/huge", `{"image":"hello:latest","resources":{"memory":"2Gi"}}`, &e)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, api.CodeQuotaExceeded, e.Error.Code)
	assert.Contains(t, e.Error.Message, "memory 0 of 1Gi used, one pod of the job wants 2Gi more")
	code = a.do("PUT", "/v1/namespaces/team-a/jobs/later", `{"image":"hello:latest","parallelism":5,"completions":5}`, nil)
	assert.Equal(t, http.StatusCreated, code, "pods that fit one at a time wait for room")
}
