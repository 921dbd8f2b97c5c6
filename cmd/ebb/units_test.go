package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestExitCode(t *testing.T) {
	dial := &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain", errors.New("boom"), 1},
		{"usage", usagef("bad"), 2},
		{"wrapped usage", fmt.Errorf("x: %w", usagef("bad")), 2},
		{"local validation", &api.ValidationError{Field: "name", Reason: "bad"}, 2},
		{"404", fmt.Errorf("get: %w", &api.APIError{Status: 404}), 3},
		{"400", &api.APIError{Status: 400}, 4},
		{"401", &api.APIError{Status: 401}, 4},
		{"409", &api.APIError{Status: 409}, 4},
		{"413", &api.APIError{Status: 413}, 4},
		{"500", &api.APIError{Status: 500}, 5},
		{"503", &api.APIError{Status: 503}, 5},
		{"unreachable", dial, 5},
		{"explicit", &exitError{code: exitDeployWait, err: errors.New("timed out")}, 6},
		{"interrupted", fmt.Errorf("wait: %w", context.Canceled), 1},
		{"interrupted request", &url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, exitCode(tt.err))
		})
	}
}

func TestErrorLine(t *testing.T) {
	assert.Equal(t, "ebb: a b c", errorLine(errors.New("a\n  b\tc\n")))
	assert.Equal(t, "ebb: interrupted", errorLine(fmt.Errorf("x: %w", context.Canceled)))
}

func TestResolveSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	xdgFile := write("xdg/ebb/config.yaml", "api: http://xdg:1\ntoken: xdg-token\n")
	homeFile := write("home/.config/ebb/config.yaml", "api: http://home:1\ntoken: home-token\nfuture: ignored\n")
	other := write("other.yaml", "api: http://other:1\n")
	empty := write("empty.yaml", "")
	broken := write("broken.yaml", "api: [unclosed\n")

	tests := []struct {
		name    string
		env     map[string]string
		o       overrides
		want    settings
		wantErr string
	}{
		{
			name: "nothing configured",
			env:  map[string]string{"HOME": filepath.Join(dir, "nobody")},
			want: settings{API: defaultAPI},
		},
		{
			name: "xdg wins over home",
			env:  map[string]string{"HOME": filepath.Join(dir, "home"), "XDG_CONFIG_HOME": filepath.Join(dir, "xdg")},
			want: settings{API: "http://xdg:1", Token: "xdg-token", ConfigPath: xdgFile, TokenSource: xdgFile},
		},
		{
			name: "relative xdg is ignored, as the spec says",
			env:  map[string]string{"HOME": filepath.Join(dir, "home"), "XDG_CONFIG_HOME": "xdg"},
			want: settings{API: "http://home:1", Token: "home-token", ConfigPath: homeFile, TokenSource: homeFile},
		},
		{
			name: "env beats file",
			env:  map[string]string{"HOME": filepath.Join(dir, "home"), "EBB_API": "http://env:1", "EBB_TOKEN": "env-token"},
			want: settings{API: "http://env:1", Token: "env-token", ConfigPath: homeFile, TokenSource: "EBB_TOKEN"},
		},
		{
			name: "flags beat env",
			env:  map[string]string{"HOME": filepath.Join(dir, "home"), "EBB_API": "http://env:1", "EBB_TOKEN": "env-token"},
			o:    overrides{apiFlag: "http://flag:1", tokenFlag: "flag-token"},
			want: settings{API: "http://flag:1", Token: "flag-token", ConfigPath: homeFile, TokenSource: "--token"},
		},
		{
			name: "--config replaces the default file; missing keys keep lower layers",
			env:  map[string]string{"HOME": filepath.Join(dir, "home"), "EBB_TOKEN": "env-token"},
			o:    overrides{configFlag: other},
			want: settings{API: "http://other:1", Token: "env-token", ConfigPath: other, TokenSource: "EBB_TOKEN"},
		},
		{
			name: "EBB_CONFIG names the file",
			env:  map[string]string{"EBB_CONFIG": other},
			want: settings{API: "http://other:1", ConfigPath: other},
		},
		{
			name: "--config beats EBB_CONFIG",
			env:  map[string]string{"EBB_CONFIG": broken},
			o:    overrides{configFlag: other},
			want: settings{API: "http://other:1", ConfigPath: other},
		},
		{
			name: "an empty file is fine",
			o:    overrides{configFlag: empty},
			want: settings{API: defaultAPI, ConfigPath: empty},
		},
		{
			name:    "a missing explicit file is an error",
			o:       overrides{configFlag: filepath.Join(dir, "missing.yaml")},
			wantErr: "no such file",
		},
		{
			name:    "a broken file is an error",
			o:       overrides{configFlag: broken},
			wantErr: "config " + broken,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveSettings(tt.o, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				assert.Equal(t, exitUsage, exitCode(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseTraffic(t *testing.T) {
	tests := []struct {
		name   string
		splits []string
		tags   []string
		want   []api.TrafficTarget
	}{
		{
			name:   "names and generations",
			splits: []string{"hello-00001=90", "2=10%"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 90}, {Revision: "hello-00002", Percent: 10}},
		},
		{
			name:   "latest in both spellings",
			splits: []string{"@latest=100"},
			want:   []api.TrafficTarget{{LatestRevision: true, Percent: 100}},
		},
		{
			name:   "latest bare",
			splits: []string{"1=40", "latest=60"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 40}, {LatestRevision: true, Percent: 60}},
		},
		{
			name:   "tag on a target in the split",
			splits: []string{"1=90", "2=10"},
			tags:   []string{"hello-00002=canary"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 90}, {Revision: "hello-00002", Percent: 10, Tag: "canary"}},
		},
		{
			name:   "tag on a revision outside the split gets a 0% target",
			splits: []string{"1=100"},
			tags:   []string{"3=preview"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}, {Revision: "hello-00003", Percent: 0, Tag: "preview"}},
		},
		{
			name:   "a second tag for one revision gets its own 0% target",
			splits: []string{"1=100"},
			tags:   []string{"1=stable", "1=blue"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 100, Tag: "stable"}, {Revision: "hello-00001", Percent: 0, Tag: "blue"}},
		},
		{
			name:   "tag on @latest",
			splits: []string{"1=100"},
			tags:   []string{"@latest=next"},
			want:   []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}, {LatestRevision: true, Tag: "next"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTraffic("hello", tt.splits, tt.tags)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestApplyDeployFlags(t *testing.T) {
	initial := 2
	base := api.FunctionSpec{
		Image: "docker.io/library/hello:v1", Port: 9000, Env: map[string]string{"A": "1", "B": "2"},
		Scale: api.Scale{Min: 1, Max: 4, Initial: &initial}, Timeout: api.D(time.Minute),
	}
	tests := []struct {
		name    string
		base    api.FunctionSpec
		o       deployOptions
		changed []string
		check   func(t *testing.T, s api.FunctionSpec)
	}{
		{
			name: "new function takes only what is given",
			o:    deployOptions{image: "x:1", env: []string{"K=v=w"}}, changed: []string{"image", "env"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Equal(t, api.FunctionSpec{Image: "x:1", Env: map[string]string{"K": "v=w"}}, s)
			},
		},
		{
			name: "update keeps what is not given",
			base: base,
			o:    deployOptions{env: []string{"A=10", "C=3"}}, changed: []string{"env"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Equal(t, map[string]string{"A": "10", "B": "2", "C": "3"}, s.Env)
				assert.Equal(t, 9000, s.Port)
				assert.Equal(t, "docker.io/library/hello:v1", s.Image)
				assert.Equal(t, 2, *s.Scale.Initial)
				assert.Equal(t, map[string]string{"A": "1", "B": "2"}, base.Env, "the base is not modified")
			},
		},
		{
			name: "KEY- removes, and removing all leaves no env",
			base: base,
			o:    deployOptions{env: []string{"A-", "B-", "NOPE-"}}, changed: []string{"env"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Nil(t, s.Env)
			},
		},
		{
			name: "a value ending in - is a value",
			o:    deployOptions{image: "x:1", env: []string{"A=b-"}}, changed: []string{"image", "env"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Equal(t, map[string]string{"A": "b-"}, s.Env)
			},
		},
		{
			name:    "--initial 0 deploys at zero",
			o:       deployOptions{image: "x:1", initial: 0},
			changed: []string{"image", "initial"},
			check: func(t *testing.T, s api.FunctionSpec) {
				require.NotNil(t, s.Scale.Initial)
				assert.Equal(t, 0, *s.Scale.Initial)
			},
		},
		{
			name:    "--image-pull-secret names the registry's credentials",
			o:       deployOptions{image: "registry.example.com/team/x:1", imagePullSecret: "regcred"},
			changed: []string{"image", "image-pull-secret"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Equal(t, "regcred", s.ImagePullSecret)
			},
		},
		{
			name:    `--image-pull-secret "" removes it`,
			base:    api.FunctionSpec{Image: "registry.example.com/team/x:1", ImagePullSecret: "regcred"},
			o:       deployOptions{},
			changed: []string{"image-pull-secret"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Empty(t, s.ImagePullSecret)
				assert.Equal(t, "registry.example.com/team/x:1", s.Image)
			},
		},
		{
			name: "every flag",
			base: base,
			o: deployOptions{port: 8081, min: 0, max: 10, concurrency: 50, hardLimit: 80,
				timeout: 30 * time.Second, memory: "1Gi", cpu: 0.5},
			changed: []string{"port", "min", "max", "concurrency", "hard-limit", "timeout", "memory", "cpu"},
			check: func(t *testing.T, s api.FunctionSpec) {
				assert.Equal(t, 8081, s.Port)
				assert.Equal(t, 0, s.Scale.Min, "an explicit 0 is applied")
				assert.Equal(t, 10, s.Scale.Max)
				assert.Equal(t, 50, s.Concurrency.Target)
				assert.Equal(t, 80, s.Concurrency.HardLimit)
				assert.Equal(t, 30*time.Second, s.Timeout.Duration)
				assert.Equal(t, "1Gi", s.Resources.Memory)
				assert.Equal(t, 0.5, s.Resources.CPU)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := map[string]bool{}
			for _, c := range tt.changed {
				changed[c] = true
			}
			got, err := applyDeployFlags(tt.base, tt.o, func(n string) bool { return changed[n] })
			require.NoError(t, err)
			tt.check(t, got)
		})
	}
}

func TestJudge(t *testing.T) {
	rev := "hello-00002"
	status := func(state string, desired, ready int) api.Function {
		return api.Function{Revisions: []api.RevisionStatus{
			{Name: "hello-00001", State: api.RevisionFailed},
			{Name: rev, State: state, Desired: desired, Ready: ready},
		}}
	}
	fresh := waitGoal{revision: rev, fresh: true, initial: 1}
	type step struct {
		fn       api.Function
		done     bool
		failed   bool
		progress string
	}
	tests := []struct {
		name  string
		goal  waitGoal
		steps []step
	}{
		{"revision not in status yet", fresh, []step{
			{fn: api.Function{}, progress: "waiting for revision hello-00002 to report status"},
		}},
		{"fresh revision must show a ready replica before the autoscaler acts", fresh, []step{
			{fn: status(api.RevisionIdle, 0, 0), progress: "hello-00002: Idle, 0/0 ready"},
			{fn: status(api.RevisionScaling, 1, 0)},
			{fn: status(api.RevisionReady, 1, 1), done: true},
		}},
		{"ready before the desired count is written", fresh, []step{
			{fn: status(api.RevisionScaling, 0, 1), done: true},
		}},
		{"scaled away between polls", fresh, []step{
			{fn: status(api.RevisionScaling, 2, 1)},
			{fn: status(api.RevisionIdle, 0, 0), done: true},
		}},
		{"every desired replica", fresh, []step{
			{fn: status(api.RevisionScaling, 3, 2), progress: "hello-00002: Scaling, 2/3 ready"},
			{fn: status(api.RevisionReady, 3, 3), done: true},
		}},
		{"initial zero is ready idle", waitGoal{revision: rev, fresh: true, initial: 0}, []step{
			{fn: status(api.RevisionIdle, 0, 0), done: true},
		}},
		{"unchanged revision idle at zero", waitGoal{revision: rev, initial: 1}, []step{
			{fn: status(api.RevisionIdle, 0, 0), done: true},
		}},
		{"unchanged revision still scaling up", waitGoal{revision: rev, initial: 1}, []step{
			{fn: status(api.RevisionScaling, 1, 0)},
			{fn: status(api.RevisionReady, 1, 1), done: true},
		}},
		{"crash loop", fresh, []step{{fn: status(api.RevisionCrashLoop, 1, 0), failed: true}}},
		{"failed", waitGoal{revision: rev}, []step{{fn: status(api.RevisionFailed, 0, 0), failed: true}}},
		{"another revision failing does not matter", fresh, []step{{fn: status(api.RevisionReady, 1, 1), done: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st waitState
			for i, s := range tt.steps {
				done, progress, err := judge(tt.goal, s.fn, &st)
				assert.Equal(t, s.done, done, "step %d", i)
				if s.failed {
					var rf *revisionFailed
					assert.ErrorAs(t, err, &rf, "step %d", i)
				} else {
					assert.NoError(t, err, "step %d", i)
				}
				if s.progress != "" {
					assert.Equal(t, s.progress, progress, "step %d", i)
				}
			}
		})
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {45 * time.Second, "45s"}, {119 * time.Second, "119s"},
		{2 * time.Minute, "2m"}, {119 * time.Minute, "119m"}, {2 * time.Hour, "2h"},
		{47 * time.Hour, "47h"}, {48 * time.Hour, "2d"}, {400 * 24 * time.Hour, "400d"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, age(now, now.Add(-tt.ago)), "%s", tt.ago)
	}
	assert.Equal(t, "-", age(now, time.Time{}))
}

// TestReadyOfCountsRoutedRevisionsOnly is bug 4's list half: `ebb list`
// showed an old revision's replicas at 0% traffic as the function's.
func TestReadyOfCountsRoutedRevisionsOnly(t *testing.T) {
	tests := []struct {
		name string
		revs []api.RevisionStatus
		want string
	}{
		{name: "no revisions", want: "0/0"},
		{name: "one routed", revs: []api.RevisionStatus{{Percent: 100, Ready: 1, Desired: 2}}, want: "1/2"},
		{
			name: "an unrouted old revision winding down is not counted",
			revs: []api.RevisionStatus{{Percent: 100, Ready: 1, Desired: 1}, {Percent: 0, Ready: 1, Desired: 1}},
			want: "1/1",
		},
		{
			name: "a split counts both",
			revs: []api.RevisionStatus{{Percent: 50, Ready: 2, Desired: 2}, {Percent: 50, Ready: 1, Desired: 2}},
			want: "3/4",
		},
		{
			name: "a tag routes a revision at 0%",
			revs: []api.RevisionStatus{{Percent: 100, Ready: 1, Desired: 1}, {Tags: []string{"canary"}, Ready: 1, Desired: 1}},
			want: "2/2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, readyOf(tt.revs))
		})
	}
}

func TestBytesIEC(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1Ki"}, {1536, "1.5Ki"}, {256 << 20, "256Mi"},
		{7<<30 + 600<<20, "7.6Gi"}, {3 << 40, "3Ti"}, {5 << 50, "5Pi"}, {1 << 62, "4096Pi"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, bytesIEC(tt.n), "%d", tt.n)
	}
}

func TestStaticELFArch(t *testing.T) {
	bin := buildStaticBinary(t)
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	arch, err := staticELFArch(data)
	require.NoError(t, err)
	assert.NotEmpty(t, arch)

	// The test binary itself links libc when cgo is on; /bin/sh always does.
	sh, err := os.ReadFile("/bin/sh")
	require.NoError(t, err)
	_, err = staticELFArch(sh)
	require.ErrorContains(t, err, "dynamically linked")

	_, err = staticELFArch([]byte("#!/bin/sh\n"))
	require.ErrorContains(t, err, "not an ELF executable")
}

func TestApplyDeployFlagsRejectsANegativeInitialScale(t *testing.T) {
	_, err := applyDeployFlags(api.FunctionSpec{}, deployOptions{initial: -1}, func(n string) bool { return n == "initial" })
	require.Error(t, err)
	assert.Equal(t, 2, exitCode(err), "a usage error")
	assert.Contains(t, err.Error(), "--initial -1: must be at least 0")
}
