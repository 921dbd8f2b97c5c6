// Package procstat reads what ebb needs of a process's line in
// /proc/PID/stat: its state, its parent and when it started. Several
// parts of ebb watch processes they did not start (runc's init, the shims
// of a containerd, leftovers of a test) and have nothing else to go by.
package procstat
