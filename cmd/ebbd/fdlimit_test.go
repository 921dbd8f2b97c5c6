package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileLimitTargets(t *testing.T) {
	lim := func(cur, max uint64) syscall.Rlimit { return syscall.Rlimit{Cur: cur, Max: max} }
	tests := []struct {
		name string
		cur  syscall.Rlimit
		want []syscall.Rlimit
	}{
		{name: "below the ceiling: the ceiling, then the hard limit", cur: lim(1024, 20000), want: []syscall.Rlimit{lim(1<<20, 1<<20), lim(20000, 20000)}},
		{name: "soft already at hard: the ceiling only", cur: lim(20000, 20000), want: []syscall.Rlimit{lim(1<<20, 1<<20)}},
		{name: "hard at the ceiling: just the soft limit", cur: lim(1024, 1<<20), want: []syscall.Rlimit{lim(1<<20, 1<<20)}},
		{name: "at the ceiling: nothing to do", cur: lim(1<<20, 1<<20), want: nil},
		{name: "a hard limit above the ceiling is left alone", cur: lim(4096, 1<<21), want: []syscall.Rlimit{lim(1<<21, 1<<21)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, fileLimitTargets(tt.cur, 1<<20))
		})
	}
}

func TestRaiseOpenFileLimit(t *testing.T) {
	got, err := raiseOpenFileLimit()
	require.NoError(t, err)
	var now syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now))
	assert.Equal(t, got, now, "what it reports is what the process has")
	assert.Equal(t, now.Max, now.Cur, "the soft limit is at the hard one")
	if mayRaiseHardLimits(t) {
		assert.GreaterOrEqual(t, now.Max, nrOpen(), "with CAP_SYS_RESOURCE, the hard limit reaches fs.nr_open")
	}
}

// mayRaiseHardLimits reports whether this process has CAP_SYS_RESOURCE,
// which raising a hard limit takes (root in a sandbox may lack it).
func mayRaiseHardLimits(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			require.NoError(t, err)
			const capSysResource = 24
			return caps&(1<<capSysResource) != 0
		}
	}
	return false
}
