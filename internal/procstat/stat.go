package procstat

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// Stat is what Read returns of a process.
type Stat struct {
	// State is the one-letter state: R, S, D, T, Z (zombie), X (dead), …
	State byte
	// PPid is the parent's pid.
	PPid int
	// Start is when the process started, in clock ticks after boot; with
	// the pid it names one process, as a pid alone may be reused.
	Start uint64
}

// Exited reports whether the process has ended, even if not yet reaped.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// errUnreadable says a stat line was not in the kernel's format.
var errUnreadable = errors.New("procstat: unreadable stat line")

// Read returns pid's Stat; an error wrapping fs.ErrNotExist means there is
// no such process.
func Read(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	st, ok := Parse(string(data))
	if !ok {
		return Stat{}, errUnreadable
	}
	return st, nil
}

// Parse reads a /proc/PID/stat line: fields 3 (state), 4 (parent) and 22
// (start time). The command name in field 2 may hold spaces and
// parentheses, so fields are counted from the last ')'.
func Parse(line string) (Stat, bool) {
	end := strings.LastIndexByte(line, ')')
	if end < 0 {
		return Stat{}, false
	}
	fields := strings.Fields(line[end+1:])
	const stateField, ppidField, startField = 0, 1, 19 // fields 3, 4 and 22, counted from 3
	if len(fields) <= startField || len(fields[stateField]) != 1 {
		return Stat{}, false
	}
	ppid, err := strconv.Atoi(fields[ppidField])
	if err != nil {
		return Stat{}, false
	}
	start, err := strconv.ParseUint(fields[startField], 10, 64)
	if err != nil {
		return Stat{}, false
	}
	return Stat{State: fields[stateField][0], PPid: ppid, Start: start}, true
}
