package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// defaultNrOpen is the kernel's default fs.nr_open, the ceiling of any
// process's open-file limit, for when /proc does not say.
const defaultNrOpen = 1 << 20

// raiseOpenFileLimit lifts ebbd's open-file limit as far as it may and
// returns the limit it ends with. Every proxied connection holds two
// descriptors, the client's and the replica's, so a burst of 10,000
// requests to a function at zero needs more than 20,000. The systemd units
// set LimitNOFILE=1048576; this gives ebbd the same when it is started any
// other way (make run, the benchmark harness, a shell). Go has already
// raised the soft limit to the hard one; only a privileged process may
// raise the hard limit, so an unprivileged ebbd keeps what it was given.
func raiseOpenFileLimit() (syscall.Rlimit, error) {
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return cur, err
	}
	for _, want := range fileLimitTargets(cur, nrOpen()) {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			return want, nil
		}
	}
	return cur, nil
}

// fileLimitTargets are the limits to try, best first: the kernel's ceiling
// for both soft and hard, then the soft limit at the current hard one.
// None when cur is already at the ceiling.
func fileLimitTargets(cur syscall.Rlimit, ceiling uint64) []syscall.Rlimit {
	var out []syscall.Rlimit
	if cur.Max < ceiling {
		out = append(out, syscall.Rlimit{Cur: ceiling, Max: ceiling})
	}
	if cur.Cur < cur.Max {
		out = append(out, syscall.Rlimit{Cur: cur.Max, Max: cur.Max})
	}
	return out
}

// nrOpen reads fs.nr_open.
func nrOpen() uint64 {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return defaultNrOpen
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n == 0 {
		return defaultNrOpen
	}
	return n
}
