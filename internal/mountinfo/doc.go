// Package mountinfo reads the mount table of this process
// (/proc/self/mountinfo, proc(5)): where the cgroup2 hierarchy is, and
// which mounts a test or benchmark left under its work directory.
package mountinfo
