package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlan(t *testing.T) {
	bin := t.TempDir()
	prog := filepath.Join(bin, "server")
	require.NoError(t, os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "data"), nil, 0o644))
	files := map[string][]byte{
		"/run/ebb/env":   []byte("DB_PASSWORD=hunter2\x00MULTI=a\nb=c\x00MODE=secret\x00"),
		"/run/ebb/empty": nil,
		"/run/ebb/open":  []byte("A=1\x00B=2"),
		"/run/ebb/nokey": []byte("hunter2\x00"),
	}
	read := func(p string) ([]byte, error) {
		if d, ok := files[p]; ok {
			return d, nil
		}
		return nil, fs.ErrNotExist
	}
	base := []string{"PATH=/nowhere:" + bin, "MODE=plain", "PORT=8080"}
	tests := []struct {
		name     string
		args     []string
		wantPath string
		wantArgv []string
		wantEnv  []string
		wantErr  string
	}{
		{name: "secrets added, overriding the spec's", args: []string{"/run/ebb/env", "server", "-v"},
			wantPath: prog, wantArgv: []string{"server", "-v"},
			wantEnv: []string{"PATH=/nowhere:" + bin, "MODE=secret", "PORT=8080", "DB_PASSWORD=hunter2", "MULTI=a\nb=c"}},
		{name: "absolute program", args: []string{"/run/ebb/empty", prog}, wantPath: prog, wantArgv: []string{prog}, wantEnv: base},
		{name: "no program", args: []string{"/run/ebb/env"}, wantErr: "usage"},
		{name: "missing env file", args: []string{"/run/ebb/gone", "server"}, wantErr: "read secret env"},
		{name: "unterminated entry", args: []string{"/run/ebb/open", "server"}, wantErr: "not NUL-terminated"},
		{name: "entry without key", args: []string{"/run/ebb/nokey", "server"}, wantErr: "entry 0 is not KEY=VALUE"},
		{name: "program not in PATH", args: []string{"/run/ebb/env", "nope"}, wantErr: "not found in $PATH"},
		{name: "program not executable", args: []string{"/run/ebb/env", filepath.Join(bin, "data")}, wantErr: "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, argv, env, err := plan(tt.args, base, read)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				assert.NotContains(t, err.Error(), "hunter2", "an error must not print a value")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantPath, path)
			assert.Equal(t, tt.wantArgv, argv)
			assert.Equal(t, tt.wantEnv, env)
		})
	}
}
