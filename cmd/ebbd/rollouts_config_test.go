package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRolloutFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("rolloutLease: 30s\nprometheusURL: http://127.0.0.1:9090/prom\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		lease   time.Duration
		prom    string
		wantErr string
	}{
		{name: "defaults", lease: 15 * time.Second},
		{name: "flags", args: []string{"--rollout-lease", "5s", "--prometheus-url", "http://127.0.0.1:9090"}, lease: 5 * time.Second, prom: "http://127.0.0.1:9090"},
		{name: "file", args: []string{"--config", file}, lease: 30 * time.Second, prom: "http://127.0.0.1:9090/prom"},
		{name: "flags beat file", args: []string{"--config", file, "--rollout-lease", "2s"}, lease: 2 * time.Second, prom: "http://127.0.0.1:9090/prom"},
		{name: "short lease", args: []string{"--rollout-lease", "100ms"}, wantErr: "--rollout-lease 100ms: must be 1s to 1h"},
		{name: "long lease", args: []string{"--rollout-lease", "2h"}, wantErr: "--rollout-lease 2h0m0s"},
		{name: "not a URL scheme", args: []string{"--prometheus-url", "ftp://127.0.0.1"}, wantErr: "--prometheus-url"},
		{name: "no host", args: []string{"--prometheus-url", "http://"}, wantErr: "--prometheus-url"},
		{name: "garbage", args: []string{"--prometheus-url", "::"}, wantErr: "--prometheus-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.lease, cfg.RolloutLease)
				assert.Equal(t, tt.prom, cfg.PrometheusURL)
			}
		})
	}
}

// parseConfigCase parses ebbd's flags args (with a data dir of the test's)
// and, when wantErr is set, checks that they are refused with it; ok says
// a config came back to check further.
func parseConfigCase(t *testing.T, args []string, wantErr string) (cfg Config, ok bool) {
	t.Helper()
	cfg, err := parseConfig(append([]string{"--data-dir", t.TempDir()}, args...), io.Discard)
	if wantErr != "" {
		require.Error(t, err)
		assert.Contains(t, err.Error(), wantErr)
		return cfg, false
	}
	require.NoError(t, err)
	return cfg, true
}
