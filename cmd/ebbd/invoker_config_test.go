package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInvokerVisibilityMarginFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("invokerVisibilityMargin: 10s\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		margin  time.Duration
		wantErr string
	}{
		{name: "default", margin: 30 * time.Second},
		{name: "flag", args: []string{"--invoker-visibility-margin", "2s"}, margin: 2 * time.Second},
		{name: "file", args: []string{"--config", file}, margin: 10 * time.Second},
		{name: "flag beats file", args: []string{"--config", file, "--invoker-visibility-margin", "3s"}, margin: 3 * time.Second},
		{name: "too short", args: []string{"--invoker-visibility-margin", "500ms"}, wantErr: "--invoker-visibility-margin 500ms: must be 1s to 1h"},
		{name: "too long", args: []string{"--invoker-visibility-margin", "2h"}, wantErr: "--invoker-visibility-margin 2h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.margin, cfg.InvokerVisibilityMargin)
			}
		})
	}
}

func TestInvokerCallbackAllowFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("invokerCallbackAllow: 10.0.0.0/8\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		policy  string
		wantErr string
	}{
		{name: "default: public addresses only", policy: ""},
		{name: "flag", args: []string{"--invoker-callback-allow", "127.0.0.0/8,::1"}, policy: "127.0.0.0/8,::1/128"},
		{name: "file", args: []string{"--config", file}, policy: "10.0.0.0/8"},
		{name: "flag beats file", args: []string{"--config", file, "--invoker-callback-allow", "192.168.0.0/16"}, policy: "192.168.0.0/16"},
		{name: "not a CIDR", args: []string{"--invoker-callback-allow", "intranet"}, wantErr: `--invoker-callback-allow "intranet": "intranet" is neither a CIDR nor an address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.policy, cfg.callbackPolicy().String())
				assert.Equal(t, tt.policy, cfg.routerConfig().CallbackPolicy.String())
			}
		})
	}
}
