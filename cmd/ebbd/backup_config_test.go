package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/backup"
)

func TestBackupFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("backupInterval: 1h\nbackupKeep: 48\nbackupDir: /srv/backups\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		want    backup.ScheduleConfig
		wantErr string
	}{
		{name: "defaults: off", args: []string{"--data-dir", "/d"}, want: backup.ScheduleConfig{Dir: "/d/backups", Keep: 24}},
		{name: "flags", args: []string{"--data-dir", "/d", "--backup-interval", "15m", "--backup-keep", "4"}, want: backup.ScheduleConfig{Dir: "/d/backups", Interval: 15 * time.Minute, Keep: 4}},
		{name: "file", args: []string{"--config", file}, want: backup.ScheduleConfig{Dir: "/srv/backups", Interval: time.Hour, Keep: 48}},
		{name: "flags beat file", args: []string{"--config", file, "--backup-keep", "2", "--backup-dir", "/b"}, want: backup.ScheduleConfig{Dir: "/b", Interval: time.Hour, Keep: 2}},
		{name: "keep none", args: []string{"--backup-interval", "1h", "--backup-keep", "0"}, wantErr: "keep at least 1"},
		{name: "too often", args: []string{"--backup-interval", "10ms"}, wantErr: "under a second"},
		{name: "relative dir", args: []string{"--backup-interval", "1h", "--backup-dir", "backups"}, wantErr: "not absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.want, cfg.backupSchedule())
			}
		})
	}
}
