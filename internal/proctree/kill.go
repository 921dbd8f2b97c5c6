package proctree

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/ebbrun/ebb/internal/procstat"
)

// Killed is a process KillMentioning signalled.
type Killed struct {
	Pid int
	// Cmdline is its command line, arguments separated by spaces.
	Cmdline string
}

// KillMentioning SIGKILLs every process but this one whose command line
// contains s, and all their descendants. Descendants go first, so that
// none is reparented away from the tree before it is signalled.
func KillMentioning(s string) []Killed {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	children := map[int][]int{}
	cmdlines := map[int]string{}
	var roots []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdlines[pid] = string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		if st, err := procstat.Read(pid); err == nil && st.PPid > 0 {
			children[st.PPid] = append(children[st.PPid], pid)
		}
		if bytes.Contains(cmdline, []byte(s)) {
			roots = append(roots, pid)
		}
	}
	var order []int
	seen := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
		order = append(order, pid)
	}
	for _, r := range roots {
		walk(r)
	}
	var killed []Killed
	for _, pid := range order {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, Killed{Pid: pid, Cmdline: cmdlines[pid]})
		}
	}
	return killed
}
