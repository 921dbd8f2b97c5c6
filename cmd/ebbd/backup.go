package main

import (
	"context"
	"io"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/backup"
)

// backupSchedule is the scheduled backups' share of the configuration.
func (c Config) backupSchedule() backup.ScheduleConfig {
	dir := c.BackupDir
	if dir == "" {
		dir = filepath.Join(c.DataDir, "backups")
	}
	return backup.ScheduleConfig{Dir: dir, Interval: c.BackupInterval, Keep: c.BackupKeep}
}

// startBackups runs scheduled backups on a control plane when
// --backup-interval is set. Each control plane, leading or not, writes to
// its own directory; the backups hold image references, not image archives
// (`ebb backup --with-images` takes those).
func (d *daemon) startBackups(ctx context.Context, g *errgroup.Group) error {
	cfg := d.cfg.backupSchedule()
	if cfg.Interval == 0 {
		return nil
	}
	dump := func(ctx context.Context, w io.Writer) (backup.Header, error) {
		keyID := ""
		if d.secrets != nil {
			// Read each time: a rotation changes it.
			keyID = d.secrets.KeyIDs()[0]
		}
		return backup.Dump(ctx, w, backup.DumpConfig{Store: d.store, KeyID: keyID, Now: time.Now()})
	}
	s, err := backup.NewScheduler(cfg, dump, d.log.With("component", "backup"), nil)
	if err != nil {
		return err
	}
	d.log.Info("scheduled backups", "dir", cfg.Dir, "every", cfg.Interval, "keep", cfg.Keep)
	g.Go(func() error { return s.Run(ctx) })
	return nil
}
