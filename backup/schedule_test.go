package backup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  ScheduleConfig
		want string
	}{
		{ScheduleConfig{}, ""},
		{ScheduleConfig{Interval: time.Hour, Keep: 24, Dir: "/var/lib/ebb/backups"}, ""},
		{ScheduleConfig{Interval: time.Millisecond, Keep: 1, Dir: "/b"}, "under a second"},
		{ScheduleConfig{Interval: time.Hour, Keep: 0, Dir: "/b"}, "keep at least 1"},
		{ScheduleConfig{Interval: time.Hour, Keep: 1, Dir: "backups"}, "not absolute"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" {
			assert.NoError(t, err)
		} else {
			assert.ErrorContains(t, err, tc.want)
		}
	}
}

func backupsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestSchedulerKeepsTheNewest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		// A temp file of a process killed mid-backup goes at start.
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".ebb-backup-x.ebbak.123.tmp"), []byte("part"), 0o600))
		revs := int64(0)
		failNext := false
		dump := func(_ context.Context, w io.Writer) (Header, error) {
			if failNext {
				failNext = false
				io.WriteString(w, "half")
				return Header{}, errors.New("store unavailable")
			}
			revs++
			bw, err := NewWriter(w, Header{Revision: revs})
			if err != nil {
				return Header{}, err
			}
			return Header{Revision: revs}, bw.Close()
		}
		s, err := NewScheduler(ScheduleConfig{Dir: dir, Interval: time.Hour, Keep: 2}, dump, slog.New(slog.DiscardHandler), nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		synctest.Wait()
		assert.Empty(t, backupsIn(t, dir), "nothing before the first interval, and no temp file left")
		for range 3 {
			time.Sleep(time.Hour) // the bubble's clock: one interval
			synctest.Wait()
		}
		names := backupsIn(t, dir)
		require.Len(t, names, 2, "the oldest pruned")
		for i, name := range names {
			f, err := os.Open(filepath.Join(dir, name))
			require.NoError(t, err)
			b, err := Read(f, Options{})
			f.Close()
			require.NoError(t, err)
			assert.Equal(t, int64(i+2), b.Header.Revision)
		}

		failNext = true
		time.Sleep(time.Hour) // the bubble's clock: one interval
		synctest.Wait()
		assert.Equal(t, names, backupsIn(t, dir), "a failed backup leaves neither a file nor a temp file, and prunes nothing")

		cancel()
		require.NoError(t, <-done)
	})
}
