package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRuncBinary(t *testing.T) {
	withHelper := t.TempDir()
	helper := filepath.Join(withHelper, ebbRuncName)
	assert.NoError(t, os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755))
	notExecutable := filepath.Join(withHelper, "plain")
	assert.NoError(t, os.WriteFile(notExecutable, nil, 0o644))
	without := t.TempDir()

	tests := []struct {
		name    string
		setting string
		exe     string
		want    string
		wantErr string
	}{
		{name: "auto finds ebb-runc beside ebbd", setting: "auto", exe: filepath.Join(withHelper, "ebbd"), want: helper},
		{name: "auto without it is runc", setting: "auto", exe: filepath.Join(without, "ebbd"), want: ""},
		{name: "runc", setting: "runc", exe: filepath.Join(withHelper, "ebbd"), want: ""},
		{name: "a path", setting: helper, want: helper},
		{name: "a path that is missing", setting: filepath.Join(without, ebbRuncName), wantErr: "not an executable file"},
		{name: "a path that is not executable", setting: notExecutable, wantErr: "not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runcBinary(tt.setting, tt.exe)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
