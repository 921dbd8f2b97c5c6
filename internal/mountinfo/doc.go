// Package mountinfo reads the mount table of this process
// (/proc/self/mountinfo, proc(5)): where the cgroup2 hierarchy is, which
// mounts a test or benchmark left under its work directory, and where the
// cgroup hierarchies are, to remove the empty cgroups runc leaves behind.
package mountinfo
