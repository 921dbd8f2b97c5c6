package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/rollouts"
	"github.com/ebbrun/ebb/rollout"
)

// fakeRollout is one rollout of the fake API. Its GETs play script, one
// state a read and then the last one again, as the runner moving it on
// would; an action replaces the script with the state the control plane's
// own rollouts.Act makes, so 409s and reasons are the real ones.
type fakeRollout struct {
	id     string
	script []api.RolloutState
	reads  int
	// actions are the POSTs it took, as "action:reason".
	actions []string
}

func (fr *fakeRollout) state() api.RolloutState { return fr.script[min(fr.reads, len(fr.script)-1)] }

// addRollout gives function ns/fn, made if missing, a newest rollout with
// the id of its first state's canary.
func (f *fakeAPI) addRollout(ns, fn string, script ...api.RolloutState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, ok := f.fns[api.QualifiedName(ns, fn)]
	if !ok {
		ff, _, _ = f.putSpecLocked(ns, fn, api.FunctionSpec{Image: "docker.io/library/hello:v1"}.WithDefaults())
	}
	fr := &fakeRollout{id: script[0].Canary, script: script}
	ff.rollouts = append([]*fakeRollout{fr}, ff.rollouts...)
}

// rolloutLog is what rollout id of ns/fn has seen: its reads and actions.
func (f *fakeAPI) rolloutLog(ns, fn, id string) (reads int, actions []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fr := range f.fns[api.QualifiedName(ns, fn)].rollouts {
		if fr.id == id {
			return fr.reads, append([]string(nil), fr.actions...)
		}
	}
	f.t.Fatalf("no rollout %s of %s/%s", id, ns, fn)
	return 0, nil
}

func rolloutView(ff *fakeFn, fr *fakeRollout) api.Rollout {
	return api.Rollout{ID: fr.id, Function: ff.fn.Name, Namespace: ff.fn.Namespace, RolloutState: fr.state()}
}

// findRollout finds the rollout a request names, or answers 404.
func (f *fakeAPI) findRollout(w http.ResponseWriter, r *http.Request) (*fakeFn, *fakeRollout, bool) {
	ff, _, ok := f.lookup(w, r)
	if !ok {
		return nil, nil, false
	}
	for _, fr := range ff.rollouts {
		if fr.id == r.PathValue("id") {
			return ff, fr, true
		}
	}
	writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("function %q has no rollout %q", r.PathValue("name"), r.PathValue("id")))
	return nil, nil, false
}

func (f *fakeAPI) listRollouts(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, _, ok := f.lookup(w, r)
	if !ok {
		return
	}
	out := api.RolloutList{Items: []api.Rollout{}}
	for _, fr := range ff.rollouts {
		out.Items = append(out.Items, rolloutView(ff, fr))
	}
	writeOK(w, 200, out)
}

func (f *fakeAPI) getRollout(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, fr, ok := f.findRollout(w, r)
	if !ok {
		return
	}
	out := rolloutView(ff, fr)
	fr.reads++
	writeOK(w, 200, out)
}

func (f *fakeAPI) rolloutAction(w http.ResponseWriter, r *http.Request) {
	var body api.RolloutAction
	if err := api.DecodeStrict(r.Body, &body); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	if err := body.Validate(); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, fr, ok := f.findRollout(w, r)
	if !ok {
		return
	}
	action := r.PathValue("action")
	st, _, err := rollouts.Act(testNow, fr.state(), action, body.Reason)
	switch {
	case errors.Is(err, rollouts.ErrUnknownAction):
		writeErr(w, 404, api.CodeNotFound, err.Error())
		return
	case errors.Is(err, rollout.ErrTransition):
		writeErr(w, 409, api.CodeConflict, fmt.Sprintf("rollout %s of %q: %s", fr.id, ff.fn.Name, err))
		return
	case err != nil:
		writeErr(w, 500, api.CodeInternal, err.Error())
		return
	}
	fr.script, fr.reads = []api.RolloutState{st}, 0
	fr.actions = append(fr.actions, action+":"+body.Reason)
	writeOK(w, 200, rolloutView(ff, fr))
}

var testRolloutPolicy = api.RolloutPolicy{Steps: []int{10, 50}, Interval: api.D(10 * time.Second),
	StepDuration: api.D(20 * time.Second), MinRequests: 20}

// window is what the router saw over one analysis interval ending at t0+at.
func window(at time.Duration, requests, errors5xx int64, p50, p99 time.Duration) rollout.Observation {
	return rollout.Observation{At: t0.Add(at),
		Canary: api.RolloutFigures{Requests: requests, Errors5xx: errors5xx, P50: p50, P99: p99},
		Stable: api.RolloutFigures{Requests: 9 * requests, P50: 3 * time.Millisecond, P99: 8 * time.Millisecond}}
}

func good(at time.Duration) rollout.Observation {
	return window(at, 100, 0, 3200*time.Microsecond, 9*time.Millisecond)
}

// trace plays windows through the rollout state machine from its start
// at t0 and returns every state it went through, the start first.
func trace(t *testing.T, p api.RolloutPolicy, windows ...rollout.Observation) []api.RolloutState {
	t.Helper()
	st, _, err := rollout.Start(t0, p, "hello-00001", "hello-00002")
	require.NoError(t, err)
	out := []api.RolloutState{st}
	for _, w := range windows {
		st, _ = rollout.Step(w.At, st, w)
		out = append(out, st)
	}
	return out
}

// rolledBack: step 1 passes twice, step 2 (50%) fails on 30% errors.
func rolledBack(t *testing.T) []api.RolloutState {
	states := trace(t, testRolloutPolicy, good(10*time.Second), good(20*time.Second), window(30*time.Second, 100, 30, 3*time.Millisecond, 9*time.Millisecond))
	require.Equal(t, api.RolloutRolledBack, states[len(states)-1].Phase)
	return states
}

// succeeded: both steps pass for their whole duration.
func succeeded(t *testing.T) []api.RolloutState {
	states := trace(t, testRolloutPolicy, good(10*time.Second), good(20*time.Second), good(30*time.Second), good(40*time.Second))
	require.Equal(t, api.RolloutSucceeded, states[len(states)-1].Phase)
	return states
}

// sleeps records a watch's waits instead of waiting; each one may first
// change the world through then(n), n counting from 1.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
	then  func(n int)
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	s.mu.Unlock()
	if s.then != nil {
		s.then(n)
	}
	return ctx.Err()
}

func (s *sleeps) tune(a *app) { a.sleep = s.sleep }

func (s *sleeps) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

func TestRolloutStatus(t *testing.T) {
	p := testRolloutPolicy
	p.Steps = []int{5, 25, 50, 100}
	p.StepDuration = api.D(time.Minute)
	p.PromQL = []api.PromCheck{
		{Query: `sum(rate(http_requests_total{revision="{{canary}}",code=~"5.."}[{{interval}}]))`, Max: 0.5},
		{Query: `histogram_quantile(0.99, rate(ebb_request_seconds_bucket{revision="{{canary}}"}[{{interval}}]))`, Max: 0.25},
	}
	promql := func(o rollout.Observation, v ...float64) rollout.Observation { o.PromQL = v; return o }
	states := trace(t, p,
		promql(good(30*time.Second), 0.01, 0.02),
		promql(good(60*time.Second), 0, 0.0125),
		promql(window(70*time.Second, 12, 0, 2*time.Millisecond, 850*time.Microsecond), 0.01, math.NaN()),
	)
	progressing := states[len(states)-1]
	require.Equal(t, 1, progressing.Step)
	// The rollout after the rolled back one.
	progressing.Stable, progressing.Canary = "hello-00002", "hello-00003"
	back := rolledBack(t)

	c, f := newCLI(t)
	f.addRollout(api.DefaultNamespace, "hello", back[len(back)-1])
	f.addRollout(api.DefaultNamespace, "hello", progressing)

	// Without ID: the newest, the one listed first.
	r := c.run(t, "rollout", "status", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	golden(t, "rollout_status", r.stdout)

	// A generation number names the canary; a final rollout is no failure
	// without --watch.
	r = c.run(t, "rollout", "status", "hello", "2")
	require.Equal(t, 0, r.code, r.stderr)
	r2 := c.run(t, "rollout", "status", "hello", "hello-00002")
	require.Equal(t, 0, r2.code, r2.stderr)
	assert.Equal(t, r.stdout, r2.stdout)
	golden(t, "rollout_status_rolledback", r2.stdout)

	r = c.run(t, "rollout", "status", "hello", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var got api.Rollout
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &got))
	assert.Equal(t, api.Rollout{ID: "hello-00003", Function: "hello", Namespace: "default", RolloutState: progressing}, got)

	r = c.run(t, "rollout", "status", "hello", "-o", "yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "phase: Progressing\n")
	assert.Contains(t, r.stdout, "verdict: Inconclusive\n")
}

// TestRolloutStatusHostileText: text the server sends cannot forge lines
// or act on the terminal, and a state no state machine makes prints
// without a panic.
func TestRolloutStatusHostileText(t *testing.T) {
	c, f := newCLI(t)
	st := rolledBack(t)[3]
	st.Reason = "bad\x1b[31m red\nebb: forged line\u202e"
	st.Stable = "hello-00001\r"
	st.Steps[1].Last.PromQL = []api.RolloutPromOutcome{{Query: "up\n\tforged", Max: 1, Missing: true}}
	weird := api.RolloutState{Phase: "Exploded\x07", Canary: "hello-00003", Step: 99, Percent: 130}
	f.addRollout(api.DefaultNamespace, "hello", st)
	f.addRollout(api.DefaultNamespace, "hello", weird)

	r := c.run(t, "rollout", "status", "hello", "hello-00002")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "\x1b")
	assert.NotContains(t, r.stdout, "\r")
	assert.NotContains(t, r.stdout, "\u202e")
	assert.NotContains(t, r.stdout, "\nebb: forged")
	assert.Contains(t, r.stdout, `bad\x1b[31m red\nebb: forged line\u202e`)
	assert.Contains(t, r.stdout, `promql[0] up\n\tforged = no value (max 1)`)

	r = c.run(t, "rollout", "status", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `Exploded\a`)
	assert.Contains(t, r.stdout, "step 100/0: canary 130%")
	assert.Contains(t, r.stdout, "No step reached yet.")
}

func TestRolloutWatch(t *testing.T) {
	tests := []struct {
		name     string
		script   func(t *testing.T) []api.RolloutState
		args     []string
		wantCode int
		wantErr  string
		golden   string
	}{
		{
			name: "until rolled back", script: rolledBack, args: []string{"--watch"},
			wantCode: exitRolloutFailed,
			wantErr:  "rollout hello-00002 of hello ended RolledBack: step 2/2 (50%) failed: error rate 0.3 (30 5xx + 0 connection errors of 100 requests) is above maxErrorRate 0.01",
			golden:   "rollout_watch_rolledback",
		},
		{
			name: "until succeeded", script: succeeded, args: []string{"-w", "hello-00002"},
			golden: "rollout_watch_succeeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newCLI(t)
			states := tt.script(t)
			// Every state read twice: a read that shows nothing new prints nothing.
			var script []api.RolloutState
			for _, st := range states {
				script = append(script, st, st)
			}
			f.addRollout(api.DefaultNamespace, "hello", script...)
			var s sleeps
			c.tune = s.tune
			r := c.run(t, append([]string{"rollout", "status", "hello"}, tt.args...)...)
			assert.Equal(t, tt.wantCode, r.code, r.stderr)
			if tt.wantErr != "" {
				oneErrorLine(t, r, tt.wantErr)
			} else {
				assert.Empty(t, r.stderr)
			}
			assert.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), len(states), "one line per change:\n%s", r.stdout)
			golden(t, tt.golden, r.stdout)

			// It stopped at the final state, reading every 1ms (the tests'
			// poll interval, below the policy's 10s).
			reads, _ := f.rolloutLog(api.DefaultNamespace, "hello", "hello-00002")
			assert.Equal(t, len(script)-1, reads, "the final state's second read never happens")
			for _, w := range s.recorded() {
				assert.Equal(t, time.Millisecond, w)
			}
		})
	}
}

// TestRolloutWatchJSON: -o json --watch is NDJSON, one rollout a change.
func TestRolloutWatchJSON(t *testing.T) {
	c, f := newCLI(t)
	states := succeeded(t)
	f.addRollout(api.DefaultNamespace, "hello", states...)
	var s sleeps
	c.tune = s.tune
	r := c.run(t, "rollout", "status", "hello", "--watch", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var got []api.RolloutState
	for sc.Scan() {
		var one api.Rollout
		require.NoError(t, api.DecodeStrict(strings.NewReader(sc.Text()), &one), "each line is one object: %q", sc.Text())
		assert.Equal(t, "hello-00002", one.ID)
		got = append(got, one.RolloutState)
	}
	assert.Equal(t, states, got)

	r = c.run(t, "rollout", "status", "hello", "--watch", "-o", "yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 1, strings.Count(r.stdout, "---\n"), "already final: one document")
	assert.Contains(t, r.stdout, "phase: Succeeded\n")
}

// TestRolloutWatchRetries: a read that fails on the server's side is
// retried, waiting longer each time, and the watch goes on; a 404 ends it.
func TestRolloutWatchRetries(t *testing.T) {
	c, f := newCLI(t)
	f.addRollout(api.DefaultNamespace, "hello", succeeded(t)...)
	s := sleeps{then: func(n int) {
		if n == 2 || n == 3 {
			f.mu.Lock()
			f.failNext = 503
			f.mu.Unlock()
		}
	}}
	c.tune = func(a *app) { s.tune(a); a.pollInterval = 500 * time.Millisecond }
	r := c.run(t, "rollout", "status", "hello", "-w")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "reading rollout hello-00002 failed (internal: store unavailable); trying again\n")
	assert.Contains(t, r.stderr, "reading rollout hello-00002 works again\n")
	waits := s.recorded()
	require.GreaterOrEqual(t, len(waits), 5)
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{500 * ms, 500 * ms, time.Second, 2 * time.Second, 500 * ms}, waits[:5])

	// The function goes away mid-watch: not found, at once.
	c, f = newCLI(t)
	f.addRollout(api.DefaultNamespace, "hello", rolledBack(t)[:2]...)
	s = sleeps{then: func(n int) {
		if n == 2 {
			f.mu.Lock()
			delete(f.fns, "hello")
			f.mu.Unlock()
		}
	}}
	c.tune = s.tune
	r = c.run(t, "rollout", "status", "hello", "-w")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, `watch rollout hello-00002 of hello: not_found: function "hello" does not exist`)
	assert.Len(t, s.recorded(), 2)

	// Always failing: it gives up after watchRetries reads in a row.
	c, f = newCLI(t)
	f.addRollout(api.DefaultNamespace, "hello", rolledBack(t)[:2]...)
	s = sleeps{then: func(int) {
		f.mu.Lock()
		f.failNext = 500
		f.mu.Unlock()
	}}
	c.tune = s.tune
	r = c.run(t, "rollout", "status", "hello", "-w")
	assert.Equal(t, exitUnavailable, r.code)
	oneErrorLine(t, r, "watch rollout hello-00002 of hello: internal: store unavailable")
	assert.Len(t, s.recorded(), watchRetries)
}

// TestRolloutWatchStopsOnInterrupt: Ctrl-C (the context's end) stops a
// watch of a rollout that never ends, during its wait, without waiting it out.
func TestRolloutWatchStopsOnInterrupt(t *testing.T) {
	c, f := newCLI(t)
	f.addRollout(api.DefaultNamespace, "hello", rolledBack(t)[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.ctx = ctx
	calls := 0
	c.tune = func(a *app) {
		a.pollInterval = time.Hour
		a.sleep = func(ctx context.Context, d time.Duration) error {
			if calls++; calls == 3 {
				cancel()
			}
			if calls < 3 {
				return nil
			}
			return sleepCtx(ctx, d) // the real wait, an hour, cut short
		}
	}
	r := c.run(t, "rollout", "status", "hello", "--watch")
	assert.Equal(t, exitFailure, r.code)
	oneErrorLine(t, r, "ebb: interrupted")
	assert.Equal(t, 3, calls)
	assert.Equal(t, 1, strings.Count(r.stdout, "\n"), "the unchanged state printed once:\n%s", r.stdout)
}

func TestRolloutActions(t *testing.T) {
	states := rolledBack(t)
	progressing, final := states[2], states[3]
	paused, _, err := rollout.Pause(t0, progressing)
	require.NoError(t, err)
	tests := []struct {
		name       string
		state      api.RolloutState
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		wantPhase  api.RolloutPhase
		wantAction string
	}{
		{
			name: "promote with a reason", state: progressing,
			args:      []string{"promote", "hello", "--reason", "dashboards look fine"},
			wantOut:   "rollout hello-00002 of hello: Succeeded, step 2/2: canary 100%; reason: promoted: dashboards look fine\n",
			wantPhase: api.RolloutSucceeded, wantAction: "promote:dashboards look fine",
		},
		{
			name: "pause", state: progressing, args: []string{"pause", "hello", "2"},
			wantOut:   "rollout hello-00002 of hello: Paused, step 2/2: canary 50%\n",
			wantPhase: api.RolloutPaused, wantAction: "pause:",
		},
		{
			name: "resume", state: paused, args: []string{"resume", "hello", "hello-00002"},
			wantOut:   "rollout hello-00002 of hello: Progressing, step 2/2: canary 50%\n",
			wantPhase: api.RolloutProgressing, wantAction: "resume:",
		},
		{
			name: "abort", state: progressing, args: []string{"abort", "hello"},
			wantOut:   "rollout hello-00002 of hello: Aborted, step 2/2: canary 0%; reason: aborted: by request\n",
			wantPhase: api.RolloutAborted, wantAction: "abort:",
		},
		{
			name: "abort with a reason", state: paused, args: []string{"abort", "hello", "--reason", "pager went off"},
			wantOut:   "rollout hello-00002 of hello: Aborted, step 2/2: canary 0%; reason: aborted: pager went off\n",
			wantPhase: api.RolloutAborted, wantAction: "abort:pager went off",
		},
		{
			name: "the phase forbids it: 409 with the server's reason", state: final, args: []string{"resume", "hello"},
			wantCode: exitRejected, wantPhase: api.RolloutRolledBack,
			wantErr: `resume rollout hello-00002 of hello: conflict: rollout hello-00002 of "hello": impossible rollout transition: cannot resume a rollout that RolledBack`,
		},
		{
			name: "promote after the end", state: final, args: []string{"promote", "hello", "hello-00002"},
			wantCode: exitRejected, wantPhase: api.RolloutRolledBack,
			wantErr: "cannot promote a rollout that RolledBack",
		},
		{
			name: "unknown rollout: 404", state: progressing, args: []string{"pause", "hello", "7"},
			wantCode: exitNotFound, wantPhase: api.RolloutProgressing,
			wantErr: `pause rollout hello-00007 of hello: not_found: function "hello" has no rollout "hello-00007"`,
		},
	}
	for _, tt := range tests {
		for _, output := range []string{"table", "json"} {
			t.Run(tt.name+"/"+output, func(t *testing.T) {
				c, f := newCLI(t)
				f.addRollout(api.DefaultNamespace, "hello", tt.state)
				r := c.run(t, append(append([]string{"rollout"}, tt.args...), "-o", output)...)
				require.Equal(t, tt.wantCode, r.code, r.stderr)
				_, actions := f.rolloutLog(api.DefaultNamespace, "hello", "hello-00002")
				if tt.wantErr != "" {
					oneErrorLine(t, r, tt.wantErr)
					assert.Empty(t, r.stdout)
					assert.Empty(t, actions)
					return
				}
				assert.Empty(t, r.stderr)
				assert.Equal(t, []string{tt.wantAction}, actions)
				if output == "table" {
					assert.Equal(t, tt.wantOut, r.stdout)
					return
				}
				var got api.Rollout
				require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &got))
				assert.Equal(t, "hello-00002", got.ID)
				assert.Equal(t, tt.wantPhase, got.Phase)
			})
		}
	}
}

// TestRolloutInNamespace: the namespace flag picks the routes, and a
// generation number names the namespace's revision.
func TestRolloutInNamespace(t *testing.T) {
	c, f := newCLI(t)
	f.namespaces["team-a"] = api.Namespace{Name: "team-a"}
	st := rolledBack(t)[2]
	st.Stable, st.Canary = "hello.team-a-00001", "hello.team-a-00002"
	f.addRollout("team-a", "hello", st)

	r := c.run(t, "-n", "team-a", "rollout", "pause", "hello", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "rollout hello.team-a-00002 of hello: Paused, step 2/2: canary 50%\n", r.stdout)
	r = c.run(t, "-n", "team-a", "rollout", "status", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, " hello.team-a-00002 of hello in namespace team-a\n")
	r = c.run(t, "-n", "team-a", "rollout", "status", "hello", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"phase": "Paused"`)
	assert.Contains(t, r.stdout, `"namespace": "team-a"`)

	r = c.run(t, "rollout", "status", "hello")
	assert.Equal(t, exitNotFound, r.code, "not in default")
	r = c.run(t, "-n", "team-b", "rollout", "status", "hello")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, `list rollouts of hello: not_found: namespace "team-b" does not exist`)
}

// TestRolloutRefused: bad command lines never reach the API (exit 2), and
// the API's refusals keep their exit codes.
func TestRolloutRefused(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		setup func(f *fakeAPI)
		code  int
		want  string
	}{
		{"unknown action", []string{"rollout", "restart", "hello"}, nil, exitUsage, `unknown command "restart" for "ebb rollout"`},
		{"missing name", []string{"rollout", "status"}, nil, exitUsage, "missing NAME (usage: ebb rollout status NAME [ID]"},
		{"missing name of an action", []string{"rollout", "abort"}, nil, exitUsage, "missing NAME (usage: ebb rollout abort NAME [ID]"},
		{"too many arguments", []string{"rollout", "promote", "hello", "2", "3"}, nil, exitUsage, `unexpected argument "3"`},
		{"bad name", []string{"rollout", "status", "Hello"}, nil, exitUsage, `function name: "Hello" must be a DNS label`},
		{"name with a slash", []string{"rollout", "pause", "a/b"}, nil, exitUsage, `function name: "a/b" must be a DNS label`},
		{"bad id", []string{"rollout", "status", "hello", "a/b"}, nil, exitUsage, `rollout "a/b": revision: "a/b" must be a DNS label`},
		{"id with dots", []string{"rollout", "status", "hello", "../x"}, nil, exitUsage, `rollout "../x": revision`},
		{"generation 0", []string{"rollout", "status", "hello", "0"}, nil, exitUsage, `rollout "0": generation "0" must be a number from 1`},
		{"@latest is no rollout", []string{"rollout", "abort", "hello", "@latest"}, nil, exitUsage, "name a revision, such as hello-00001"},
		{"reason on pause", []string{"rollout", "pause", "hello", "--reason", "x"}, nil, exitUsage, "unknown flag: --reason"},
		{"reason of two lines", []string{"rollout", "abort", "hello", "--reason", "a\nb"}, nil, exitUsage, "--reason: reason: must be one line of printable text"},
		{"reason too long", []string{"rollout", "promote", "hello", "--reason", strings.Repeat("x", api.MaxRolloutReason+1)}, nil, exitUsage, "is longer than 1024 bytes"},
		{"no such function", []string{"rollout", "status", "nope"}, nil, exitNotFound, `list rollouts of nope: not_found: function "nope" does not exist`},
		{"no such function, an action", []string{"rollout", "promote", "nope", "2"}, nil, exitNotFound, `promote rollout nope-00002 of nope: not_found: function "nope" does not exist`},
		{"no rollouts", []string{"rollout", "abort", "hello"}, func(f *fakeAPI) {
			f.mu.Lock()
			f.putSpecLocked(api.DefaultNamespace, "hello", api.FunctionSpec{Image: "a"}.WithDefaults())
			f.mu.Unlock()
		}, exitNotFound, "function hello has no rollouts"},
		{"no such rollout", []string{"rollout", "status", "hello", "9"}, func(f *fakeAPI) {
			f.addRollout(api.DefaultNamespace, "hello", rolledBack(t)[0])
		}, exitNotFound, `read rollout hello-00009 of hello: not_found: function "hello" has no rollout "hello-00009"`},
		{"server failing", []string{"rollout", "status", "hello", "-w"}, func(f *fakeAPI) { f.failNext = 500 }, exitUnavailable, "list rollouts of hello: internal: store unavailable"},
		{"a listed rollout without an id", []string{"rollout", "pause", "hello"}, func(f *fakeAPI) {
			f.addRollout(api.DefaultNamespace, "hello", rolledBack(t)[0])
			f.fns["hello"].rollouts[0].id = ""
		}, exitFailure, "the API listed a rollout with a bad id: rollout id: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newCLI(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			r := c.run(t, tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestPollWait(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		poll, analysis time.Duration
		failures       int
		want           time.Duration
	}{
		{500 * ms, 10 * time.Second, 0, 500 * ms},
		{500 * ms, 200 * ms, 0, 200 * ms},            // a shorter analysis interval
		{500 * ms, time.Nanosecond, 0, 100 * ms},     // never below a policy's shortest
		{500 * ms, 0, 0, 500 * ms},                   // no policy
		{500 * ms, -time.Second, 0, 500 * ms},        // a hostile one
		{500 * ms, 10 * time.Second, 1, time.Second}, // failures double it
		{500 * ms, 10 * time.Second, 3, 4 * time.Second},
		{500 * ms, 10 * time.Second, 4, watchMaxWait},  // up to a bound
		{500 * ms, 10 * time.Second, 60, watchMaxWait}, // without overflowing
		{time.Minute, 0, 2, time.Minute},               // a long poll is never shortened
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pollWait(tt.poll, tt.analysis, tt.failures), "%+v", tt)
	}
}

func TestRolloutFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "-", -time.Second: "-", 850 * time.Microsecond: "850µs", 1234567: "1.23ms",
		12345678: "12.3ms", 1234567890: "1.23s", 90 * time.Second: "1m30s",
	} {
		assert.Equal(t, want, latency(d), "%d", d)
	}
	for d, want := range map[time.Duration]string{
		10 * time.Second: "10s", time.Minute: "1m", 5 * time.Minute: "5m", time.Hour: "1h", 90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s",
	} {
		assert.Equal(t, want, shortDuration(d))
	}
	assert.Equal(t, "0.30%", percent(0.003))
	assert.Equal(t, "-", ratio(0, "p99"))
	assert.Equal(t, "1.13x", ratio(1.126, ""))
	assert.Equal(t, "1.50x p50", ratio(1.5, "p50"))
	assert.Equal(t, "plain text, déjà vu", plain("plain text, déjà vu"))
	assert.Equal(t, `a\nb\tc\x1b[0m\u202e`, plain("a\nb\tc\x1b[0m\u202e"))
}

// TestRolloutAgainstRealAPI runs the commands against the real control
// plane (no runner: nothing moves a step, the actions do): a changed spec
// starts a rollout, and status, the actions, their 409 and a watch of an
// ended rollout work on the server's own answers.
func TestRolloutAgainstRealAPI(t *testing.T) {
	e := newLifecycleEnv(t)
	client, err := api.NewClient(e.env["EBB_API"], e.env["EBB_TOKEN"])
	require.NoError(t, err)
	policy := api.RolloutPolicy{Steps: []int{10, 50}, Interval: api.D(time.Second), StepDuration: api.D(time.Hour)}
	put := func(n string) {
		t.Helper()
		_, _, err := client.PutFunction(context.Background(), "hello",
			api.FunctionSpec{Image: "hello:latest", Env: map[string]string{"N": n}, Rollout: &policy})
		require.NoError(t, err)
	}
	put("1")
	r := e.run(t, "rollout", "status", "hello")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, "function hello has no rollouts")

	put("2")
	var got api.Rollout
	r = e.run(t, "rollout", "status", "hello", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	assert.Equal(t, "hello-00002", got.ID)
	assert.Equal(t, "hello-00001", got.Stable)
	assert.Equal(t, api.RolloutProgressing, got.Phase)
	r = e.run(t, "rollout", "status", "hello", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "step 1/2: canary 10%")
	assert.Contains(t, r.stdout, "Step 1: no check yet.")

	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"pause", "hello"}, "rollout hello-00002 of hello: Paused, step 1/2: canary 10%\n"},
		{[]string{"resume", "hello", "2"}, "rollout hello-00002 of hello: Progressing, step 1/2: canary 10%\n"},
		{[]string{"promote", "hello", "--reason", "looks good"}, "rollout hello-00002 of hello: Succeeded, step 1/2: canary 100%; reason: promoted: looks good\n"},
	} {
		r = e.run(t, append([]string{"rollout"}, step.args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, step.want, r.stdout)
	}
	r = e.run(t, "rollout", "abort", "hello")
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, "abort rollout hello-00002 of hello: conflict: ")
	assert.Contains(t, r.stderr, "cannot abort a rollout that Succeeded")
	r = e.run(t, "rollout", "status", "hello", "--watch")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Succeeded")

	// The next change is a rollout from hello-00002; aborted, a watch of
	// it fails with its reason, and the stable revision has the traffic.
	put("3")
	r = e.run(t, "rollout", "abort", "hello", "--reason", "fire drill")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "rollout hello-00003 of hello: Aborted, step 1/2: canary 0%; reason: aborted: fire drill\n", r.stdout)
	r = e.run(t, "rollout", "status", "hello", "-w")
	assert.Equal(t, exitRolloutFailed, r.code)
	oneErrorLine(t, r, "rollout hello-00003 of hello ended Aborted: aborted: fire drill")
	assert.Equal(t, []string{"hello-00002=100"}, split(e.function(t, "hello")))
}
