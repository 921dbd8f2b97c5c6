package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRuncBinary(t *testing.T) {
	withHelper := t.TempDir()
	helper := filepath.Join(withHelper, ebbRuncName)
	assert.NoError(t, os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755))
	alsoWithHelper := t.TempDir()
	otherHelper := filepath.Join(alsoWithHelper, ebbRuncName)
	assert.NoError(t, os.WriteFile(otherHelper, []byte("#!/bin/sh\n"), 0o755))
	notExecutable := filepath.Join(withHelper, "plain")
	assert.NoError(t, os.WriteFile(notExecutable, nil, 0o644))
	without := t.TempDir()

	tests := []struct {
		name      string
		setting   string
		ebbdPaths []string
		want      string
		wantErr   string
	}{
		{name: "auto finds ebb-runc beside ebbd", setting: "auto", ebbdPaths: []string{filepath.Join(withHelper, "ebbd")}, want: helper},
		{name: "auto prefers the path ebbd was started by", setting: "auto",
			ebbdPaths: []string{filepath.Join(alsoWithHelper, "ebbd"), filepath.Join(withHelper, "ebbd")}, want: otherHelper},
		{name: "auto looks beside the real file next", setting: "auto",
			ebbdPaths: []string{filepath.Join(without, "ebbd"), filepath.Join(withHelper, "ebbd")}, want: helper},
		{name: "auto without it is runc", setting: "auto", ebbdPaths: []string{filepath.Join(without, "ebbd")}, want: ""},
		{name: "runc", setting: "runc", ebbdPaths: []string{filepath.Join(withHelper, "ebbd")}, want: ""},
		{name: "a path", setting: helper, want: helper},
		{name: "a path that is missing", setting: filepath.Join(without, ebbRuncName), wantErr: "not an executable file"},
		{name: "a path that is not executable", setting: notExecutable, wantErr: "not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runcBinary(tt.setting, tt.ebbdPaths)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// fakeRuncLister reports fixed runc binaries.
type fakeRuncLister struct {
	binaries map[string][]string
	err      error
}

func (f fakeRuncLister) RuncBinaries(context.Context) (map[string][]string, error) {
	return f.binaries, f.err
}

func TestWarnMissingRuncBinaries(t *testing.T) {
	present := filepath.Join(t.TempDir(), ebbRuncName)
	assert.NoError(t, os.WriteFile(present, []byte("#!/bin/sh\n"), 0o755))
	gone := filepath.Join(t.TempDir(), ebbRuncName)

	tests := []struct {
		name     string
		lister   fakeRuncLister
		wantLogs []string
		notLogs  []string
	}{
		{name: "binary in place", lister: fakeRuncLister{binaries: map[string][]string{present: {"a"}}}, notLogs: []string{"level=WARN"}},
		{name: "binary gone", lister: fakeRuncLister{binaries: map[string][]string{gone: {"b", "c"}, present: {"a"}}},
			wantLogs: []string{"runc binary that is gone", "binary=" + gone, "containers=2"}, notLogs: []string{"binary=" + present}},
		{name: "containerd cannot say", lister: fakeRuncLister{err: errors.New("unavailable")},
			wantLogs: []string{"cannot check the runc binaries", "unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			warnMissingRuncBinaries(context.Background(), tt.lister, slog.New(slog.NewTextHandler(&out, nil)))
			for _, want := range tt.wantLogs {
				assert.Contains(t, out.String(), want)
			}
			for _, not := range tt.notLogs {
				assert.NotContains(t, out.String(), not)
			}
		})
	}
}
