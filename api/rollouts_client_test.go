package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testRollout(id string, phase RolloutPhase) Rollout {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	return Rollout{ID: id, Function: "hello", Namespace: DefaultNamespace, RolloutState: RolloutState{
		Phase: phase, Policy: RolloutPolicy{Steps: []int{10, 50}}.WithDefaults(),
		Stable: "hello-00001", Canary: id, Step: 1, Percent: 50, StartedAt: t0, StepStart: t0.Add(time.Minute),
		Steps: []RolloutStep{
			{Percent: 10, StartedAt: t0, Checks: 6, Passed: 6, Last: &RolloutAnalysis{
				At: t0.Add(time.Minute), Verdict: VerdictPass, Reason: "error rate 0 of 100 requests",
				Canary:       RolloutFigures{Requests: 100, P50: 3 * time.Millisecond, P99: 9 * time.Millisecond},
				Stable:       RolloutFigures{Requests: 900, P50: 3 * time.Millisecond, P99: 8 * time.Millisecond},
				LatencyRatio: 1.125, PromQL: []RolloutPromOutcome{{Query: "up", Max: 1, Value: 1}},
			}},
			{Percent: 50, StartedAt: t0.Add(time.Minute)},
		},
	}}
}

func TestRolloutClientRoutes(t *testing.T) {
	ctx := context.Background()
	one := testRollout("hello-00002", RolloutProgressing)
	oneJSON, err := json.Marshal(one)
	require.NoError(t, err)
	listJSON, err := json.Marshal(RolloutList{Items: []Rollout{one, testRollout("hello-00001", RolloutSucceeded)}})
	require.NoError(t, err)

	tests := []struct {
		name     string
		body     string
		call     func(t *testing.T, c *Client)
		wantReq  string // method and path
		wantBody string
	}{
		{
			name: "list", body: string(listJSON),
			call: func(t *testing.T, c *Client) {
				got, err := c.Rollouts(ctx, "hello")
				require.NoError(t, err)
				require.Len(t, got, 2)
				assert.Equal(t, one, got[0], "decoded as the server wrote it")
				assert.Equal(t, "hello-00001", got[1].ID)
			},
			wantReq: "GET /v1/functions/hello/rollouts",
		},
		{
			name: "list in a namespace", body: `{"items":[]}`,
			call: func(t *testing.T, c *Client) {
				got, err := c.InNamespace("team-a").Rollouts(ctx, "hello")
				require.NoError(t, err)
				assert.Empty(t, got)
			},
			wantReq: "GET /v1/namespaces/team-a/functions/hello/rollouts",
		},
		{
			name: "list of none is empty, not nil", body: `{"items":null}`,
			call: func(t *testing.T, c *Client) {
				got, err := c.Rollouts(ctx, "hello")
				require.NoError(t, err)
				assert.NotNil(t, got)
				assert.Empty(t, got)
			},
			wantReq: "GET /v1/functions/hello/rollouts",
		},
		{
			name: "get", body: string(oneJSON),
			call: func(t *testing.T, c *Client) {
				got, err := c.Rollout(ctx, "hello", "hello-00002")
				require.NoError(t, err)
				assert.Equal(t, one, got)
			},
			wantReq: "GET /v1/functions/hello/rollouts/hello-00002",
		},
		{
			name: "get in a namespace, unknown fields ignored", body: `{"id":"hello.team-a-00002","phase":"Paused","future":{"x":1}}`,
			call: func(t *testing.T, c *Client) {
				got, err := c.InNamespace("team-a").Rollout(ctx, "hello", "hello.team-a-00002")
				require.NoError(t, err)
				assert.Equal(t, RolloutPaused, got.Phase)
			},
			wantReq: "GET /v1/namespaces/team-a/functions/hello/rollouts/hello.team-a-00002",
		},
		{
			name: "promote with a reason", body: string(oneJSON),
			call: func(t *testing.T, c *Client) {
				got, err := c.RolloutAction(ctx, "hello", "hello-00002", RolloutPromote, "looks good – ship it")
				require.NoError(t, err)
				assert.Equal(t, "hello-00002", got.ID)
			},
			wantReq: "POST /v1/functions/hello/rollouts/hello-00002/promote", wantBody: `{"reason":"looks good – ship it"}`,
		},
		{
			name: "pause without a reason sends an empty object", body: string(oneJSON),
			call: func(t *testing.T, c *Client) {
				_, err := c.RolloutAction(ctx, "hello", "hello-00002", RolloutPause, "")
				require.NoError(t, err)
			},
			wantReq: "POST /v1/functions/hello/rollouts/hello-00002/pause", wantBody: `{}`,
		},
		{
			name: "resume", body: string(oneJSON),
			call: func(t *testing.T, c *Client) {
				_, err := c.RolloutAction(ctx, "hello", "hello-00002", RolloutResume, "")
				require.NoError(t, err)
			},
			wantReq: "POST /v1/functions/hello/rollouts/hello-00002/resume", wantBody: `{}`,
		},
		{
			name: "abort in a namespace", body: `{"id":"hello.team-a-00002","phase":"Aborted","reason":"aborted: by request"}`,
			call: func(t *testing.T, c *Client) {
				got, err := c.InNamespace("team-a").RolloutAction(ctx, "hello", "hello.team-a-00002", RolloutAbort, "")
				require.NoError(t, err)
				assert.Equal(t, RolloutAborted, got.Phase)
				assert.Equal(t, "aborted: by request", got.Reason)
			},
			wantReq: "POST /v1/namespaces/team-a/functions/hello/rollouts/hello.team-a-00002/abort", wantBody: `{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := fakeAPI(t, http.StatusOK, tt.body)
			tt.call(t, c)
			assert.Equal(t, tt.wantReq, rec.Method+" "+rec.Path)
			assert.Equal(t, "Bearer "+testToken, rec.Auth)
			if tt.wantBody != "" {
				assert.JSONEq(t, tt.wantBody, string(rec.Body))
				assert.Equal(t, "application/json", rec.ContentType)
			} else {
				assert.Empty(t, rec.Body)
			}
		})
	}
}

// TestRolloutClientRejectsBadInputLocally: names, ids, actions and reasons
// become path segments or stored text, so a bad one never leaves the client.
func TestRolloutClientRejectsBadInputLocally(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()

	for _, fn := range []string{"", "..", "a/b", "Hello", "a?b=c", strings.Repeat("a", 64)} {
		_, err := c.Rollouts(ctx, fn)
		assert.True(t, IsValidation(err), "Rollouts(%q): %v", fn, err)
		_, err = c.Rollout(ctx, fn, "hello-00002")
		assert.True(t, IsValidation(err), "Rollout(%q): %v", fn, err)
		_, err = c.RolloutAction(ctx, fn, "hello-00002", RolloutAbort, "")
		assert.True(t, IsValidation(err), "RolloutAction(%q): %v", fn, err)
	}
	for _, id := range []string{"", "..", "a/b", "Hello-00001", "a?b=c", "a..b", "a#b", "%2e%2e", strings.Repeat("a", 100)} {
		_, err := c.Rollout(ctx, "hello", id)
		assert.True(t, IsValidation(err), "Rollout(%q): %v", id, err)
		_, err = c.RolloutAction(ctx, "hello", id, RolloutPromote, "")
		assert.True(t, IsValidation(err), "RolloutAction id %q: %v", id, err)
	}
	for _, action := range []string{"", "delete", "PROMOTE", "promote/x", "../promote", "promote?x=1", " abort", strings.Repeat("p", 10000)} {
		_, err := c.RolloutAction(ctx, "hello", "hello-00002", action, "")
		assert.True(t, IsValidation(err), "action %q: %v", action, err)
		assert.Less(t, len(err.Error()), 200, "a huge action is not echoed whole")
	}
	for _, reason := range []string{"two\nlines", "tab\there", "\x1b[31mred", "bidi \u202e txet", "nul\x00", "\xff\xfe", strings.Repeat("x", MaxRolloutReason+1)} {
		_, err := c.RolloutAction(ctx, "hello", "hello-00002", RolloutAbort, reason)
		assert.True(t, IsValidation(err), "reason %q: %v", reason, err)
	}
	assert.Zero(t, calls.Load(), "no request may leave for bad input")

	// The bounds themselves pass.
	assert.NoError(t, RolloutAction{Reason: strings.Repeat("x", MaxRolloutReason)}.Validate())
	assert.NoError(t, RolloutAction{Reason: "déjà vu, 100% – ok"}.Validate())
	for _, a := range RolloutActions {
		assert.NoError(t, ValidateRolloutAction(a))
	}
}

// TestRolloutClientOddAnswers: what a broken server or a proxy may answer
// comes back as an error that says what happened, never as a rollout
// without a phase.
func TestRolloutClientOddAnswers(t *testing.T) {
	ctx := context.Background()
	get := func(c *Client) error { _, err := c.Rollout(ctx, "hello", "hello-00002"); return err }
	list := func(c *Client) error { _, err := c.Rollouts(ctx, "hello"); return err }
	act := func(c *Client) error {
		_, err := c.RolloutAction(ctx, "hello", "hello-00002", RolloutResume, "")
		return err
	}
	tests := []struct {
		name   string
		status int
		body   string
		call   func(*Client) error
		check  func(t *testing.T, err error)
	}{
		{"404 envelope", 404, `{"error":{"code":"not_found","message":"rollout \"hello-00002\" of function \"hello\" does not exist"}}`, get,
			func(t *testing.T, err error) {
				assert.True(t, IsNotFound(err))
				assert.Contains(t, err.Error(), `rollout "hello-00002" of function "hello" does not exist`)
			}},
		{"409 envelope: the phase forbids it", 409, `{"error":{"code":"conflict","message":"impossible rollout transition: cannot resume a rollout that Succeeded"}}`, act,
			func(t *testing.T, err error) {
				assert.True(t, IsConflict(err))
				assert.Equal(t, "conflict: impossible rollout transition: cannot resume a rollout that Succeeded", err.Error())
			}},
		{"proxy html", 502, "<html>\n<body>Bad Gateway</body></html>", list,
			func(t *testing.T, err error) {
				assert.True(t, IsServerError(err))
				assert.Equal(t, "HTTP 502 Bad Gateway: <html> <body>Bad Gateway</body></html>", err.Error())
			}},
		{"a 201 is not the contract", 201, `{"id":"hello-00002"}`, act,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), "HTTP 201 Created") }},
		{"null", 200, `null`, get,
			func(t *testing.T, err error) {
				assert.Contains(t, err.Error(), `answered with rollout "" for rollout "hello-00002"`)
			}},
		{"empty object", 200, `{}`, act,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), `answered with rollout ""`) }},
		{"another rollout", 200, `{"id":"hello-00003","phase":"Progressing"}`, get,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), `answered with rollout "hello-00003"`) }},
		{"truncated", 200, `{"id":"hello-00002","phase":"Progr`, get,
			func(t *testing.T, err error) {
				assert.Contains(t, err.Error(), "decode GET /v1/functions/hello/rollouts/hello-00002 answer")
			}},
		{"wrong types", 200, `{"id":"hello-00002","step":"two"}`, get,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), "decode GET") }},
		{"a list that is an array", 200, `[{"id":"hello-00002"}]`, list,
			func(t *testing.T, err error) {
				assert.Contains(t, err.Error(), "decode GET /v1/functions/hello/rollouts answer")
			}},
		{"items that are not rollouts", 200, `{"items":[1,2]}`, list,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), "decode GET") }},
		{"empty 200", 200, ``, list,
			func(t *testing.T, err error) { assert.Contains(t, err.Error(), "EOF") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeAPI(t, tt.status, tt.body)
			err := tt.call(c)
			require.Error(t, err)
			tt.check(t, err)
		})
	}
}
