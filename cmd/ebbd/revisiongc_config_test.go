package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRevisionGCFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("revisionHistory: 3\nrevisionMinAge: 10m\nrevisionGCInterval: 30s\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		history int
		minAge  time.Duration
		every   time.Duration
		wantErr string
	}{
		{name: "defaults", history: 10, minAge: time.Hour, every: time.Minute},
		{name: "flags", args: []string{"--revision-history", "2", "--revision-min-age", "90s", "--revision-gc-interval", "1s"}, history: 2, minAge: 90 * time.Second, every: time.Second},
		{name: "file", args: []string{"--config", file}, history: 3, minAge: 10 * time.Minute, every: 30 * time.Second},
		{name: "flags beat file", args: []string{"--config", file, "--revision-history", "5", "--revision-gc-interval", "2s"}, history: 5, minAge: 10 * time.Minute, every: 2 * time.Second},
		{name: "no history", args: []string{"--revision-history", "0"}, wantErr: "--revision-history 0: must be at least 1"},
		{name: "negative history", args: []string{"--revision-history", "-3"}, wantErr: "--revision-history -3"},
		{name: "zero min age", args: []string{"--revision-min-age", "0s"}, wantErr: "--revision-min-age 0s: must be positive"},
		{name: "negative min age", args: []string{"--revision-min-age", "-1h"}, wantErr: "--revision-min-age -1h0m0s"},
		{name: "not a duration", args: []string{"--revision-min-age", "soon"}, wantErr: "revision-min-age"},
		{name: "zero gc interval", args: []string{"--revision-gc-interval", "0s"}, wantErr: "--revision-gc-interval 0s: must be positive"},
		{name: "negative gc interval", args: []string{"--revision-gc-interval", "-1s"}, wantErr: "--revision-gc-interval -1s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.history, cfg.RevisionHistory)
				assert.Equal(t, tt.minAge, cfg.RevisionMinAge)
				assert.Equal(t, tt.every, cfg.RevisionGCInterval)
			}
		})
	}
}
