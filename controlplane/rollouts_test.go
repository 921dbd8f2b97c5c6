package controlplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

const rolloutSpec = `{"image":"hello:latest","env":{"V":"%s"},"rollout":{"steps":[10,50],"interval":"1s","stepDuration":"1s"}}`

func (a *testAPI) deployVersion(path, v string) api.Function {
	a.t.Helper()
	var fn api.Function
	status := a.do("PUT", path, strings.Replace(rolloutSpec, "%s", v, 1), &fn)
	require.Contains(a.t, []int{http.StatusOK, http.StatusCreated}, status)
	return fn
}

func percents(fn api.Function) map[string]int {
	out := map[string]int{}
	for _, t := range fn.Traffic {
		name := t.Revision
		if t.LatestRevision {
			name = "latest"
		}
		out[name] += t.Percent
	}
	return out
}

// A new revision of a function with a rollout policy gets the first step,
// not all traffic; another one supersedes the live rollout; a split set
// by hand aborts it; actions go through the state machine.
func TestRolloutLifecycleThroughTheAPI(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	first := a.deployVersion("/v1/functions/hello", "1")
	assert.Equal(t, map[string]int{"latest": 100}, percents(first), "a first revision has nothing to roll from")
	var list api.RolloutList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts", "", &list))
	assert.Empty(t, list.Items)

	second := a.deployVersion("/v1/functions/hello", "2")
	assert.Equal(t, map[string]int{"hello-00001": 90, "hello-00002": 10}, percents(second))
	var ro api.Rollout
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts/hello-00002", "", &ro))
	assert.Equal(t, api.RolloutProgressing, ro.Phase)
	assert.Equal(t, "hello", ro.Function)
	assert.Equal(t, api.DefaultNamespace, ro.Namespace)
	assert.Equal(t, "hello-00001", ro.Stable)
	assert.Equal(t, 10, ro.Percent)

	// Pause and resume; a second pause changes nothing.
	for _, action := range []string{"pause", "pause", "resume"} {
		require.Equal(t, http.StatusOK, a.do("POST", "/v1/functions/hello/rollouts/hello-00002/"+action, "", &ro), action)
	}
	assert.Equal(t, api.RolloutProgressing, ro.Phase)

	third := a.deployVersion("/v1/functions/hello", "3")
	assert.Equal(t, map[string]int{"hello-00001": 90, "hello-00003": 10}, percents(third), "the new canary starts from the same stable revision")
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts/hello-00002", "", &ro))
	assert.Equal(t, api.RolloutAborted, ro.Phase)
	assert.Contains(t, ro.Reason, "superseded by revision hello-00003")

	require.Equal(t, http.StatusOK, a.do("POST", "/v1/functions/hello/rollouts/hello-00003/promote", `{"reason":"looks good"}`, &ro))
	assert.Equal(t, api.RolloutSucceeded, ro.Phase)
	assert.Contains(t, ro.Reason, "looks good")
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Equal(t, map[string]int{"latest": 100}, percents(fn), "a promoted canary that is latest: the function follows latest again")

	// The next revision rolls from the promoted one; a hand-set split aborts it.
	a.deployVersion("/v1/functions/hello", "4")
	fn = api.Function{}
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00004","percent":100}]}`, &fn))
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts/hello-00004", "", &ro))
	assert.Equal(t, api.RolloutAborted, ro.Phase)
	assert.Equal(t, "hello-00003", ro.Stable)
	assert.Contains(t, ro.Reason, "traffic set by hand")
	assert.Equal(t, map[string]int{"hello-00004": 100}, percents(fn), "the hand-set split wins")

	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts", "", &list))
	var ids []string
	for _, r := range list.Items {
		ids = append(ids, r.ID)
	}
	assert.Equal(t, []string{"hello-00004", "hello-00003", "hello-00002"}, ids, "newest first")

	// The function's delete takes its rollouts with it.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello", "", nil))
	assert.Empty(t, a.keys(store.PrefixRollouts))
}

func TestRolloutsInANamespace(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	a.deployVersion("/v1/namespaces/team-a/functions/hello", "1")
	a.deployVersion("/v1/namespaces/team-a/functions/hello", "2")
	var ro api.Rollout
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello/rollouts/hello.team-a-00002", "", &ro))
	assert.Equal(t, "team-a", ro.Namespace)
	assert.Equal(t, "hello.team-a-00001", ro.Stable)
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/rollouts/hello.team-a-00002", "", nil),
		"another namespace's function is not found through default's paths")
}

func TestRolloutRoutesRefuseHostileInput(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	a.deployVersion("/v1/functions/hello", "1")
	a.deployVersion("/v1/functions/hello", "2")
	require.Equal(t, http.StatusOK, a.do("POST", "/v1/functions/hello/rollouts/hello-00002/abort", "", nil))
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, message            string
	}{
		{"unknown function", "GET", "/v1/functions/nope/rollouts", "", 404, api.CodeNotFound, `function "nope" does not exist`},
		{"unknown function's rollout", "GET", "/v1/functions/nope/rollouts/nope-00001", "", 404, api.CodeNotFound, `function "nope" does not exist`},
		{"unknown rollout", "GET", "/v1/functions/hello/rollouts/hello-00009", "", 404, api.CodeNotFound, `has no rollout "hello-00009"`},
		{"bad function name", "GET", "/v1/functions/Bad_Name/rollouts", "", 400, api.CodeInvalid, "name"},
		{"bad id", "GET", "/v1/functions/hello/rollouts/..%2Fx", "", 400, api.CodeInvalid, "rollout id"},
		{"unknown action", "POST", "/v1/functions/hello/rollouts/hello-00002/explode", "", 404, api.CodeNotFound, "unknown rollout action"},
		{"final rollout", "POST", "/v1/functions/hello/rollouts/hello-00002/resume", "", 409, api.CodeConflict, "cannot resume a rollout that Aborted"},
		{"not JSON", "POST", "/v1/functions/hello/rollouts/hello-00002/abort", "{", 400, api.CodeInvalid, ""},
		{"unknown field", "POST", "/v1/functions/hello/rollouts/hello-00002/abort", `{"reason":"x","force":true}`, 400, api.CodeInvalid, "force"},
		{"huge reason", "POST", "/v1/functions/hello/rollouts/hello-00002/abort", `{"reason":"` + strings.Repeat("x", 2000) + `"}`, 400, api.CodeInvalid, "reason"},
		{"two-line reason", "POST", "/v1/functions/hello/rollouts/hello-00002/abort", `{"reason":"a\nforged line"}`, 400, api.CodeInvalid, "one line"},
		{"no such route", "DELETE", "/v1/functions/hello/rollouts/hello-00002", "", 404, api.CodeNotFound, "no route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.do(tc.method, tc.path, tc.body, &e)
			assert.Equal(t, tc.status, status)
			if tc.code != "" {
				assert.Equal(t, tc.code, e.Error.Code)
				assert.Contains(t, e.Error.Message, tc.message)
			}
		})
	}
	var ro api.Rollout
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts/hello-00002", "", &ro))
	assert.Equal(t, api.RolloutAborted, ro.Phase, "nothing hostile changed it")
}

// A manifest with a rollout policy and no traffic leaves the traffic to
// its rollouts: a changed document starts one, and applying it again
// mid-rollout does not undo the step.
func TestApplyLeavesTrafficToRollouts(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	doc := func(v string) string {
		return "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: hello}\nspec:\n  image: hello:latest\n  env: {V: \"" + v + "\"}\n  rollout: {steps: [10, 50]}\n"
	}
	for _, step := range []struct{ doc, action string }{
		{doc("1"), "created"},
		{doc("2"), "configured"},
		{doc("2"), "unchanged"},
	} {
		code, resp := a.applyDoc("/v1/apply", step.doc)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, []string{"Function/hello " + step.action}, actions(resp))
	}
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Equal(t, map[string]int{"hello-00001": 90, "hello-00002": 10}, percents(fn), "the rollout's step stands")

	// A document that names its traffic owns it: the rollout ends.
	code, _ := a.applyDoc("/v1/apply", doc("2")+"  traffic: [{revision: hello-00002, percent: 100}]\n")
	require.Equal(t, http.StatusOK, code)
	var ro api.Rollout
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/rollouts/hello-00002", "", &ro))
	assert.Equal(t, api.RolloutAborted, ro.Phase)
}
