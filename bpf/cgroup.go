package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/mountinfo"
)

// errNoCgroup2 means the machine has no cgroup2 mount.
var errNoCgroup2 = errors.New("no cgroup2 mount in /proc/self/mountinfo")

// FindCgroup2 returns where the cgroup2 hierarchy is mounted: /sys/fs/cgroup
// on unified systems, /sys/fs/cgroup/unified on hybrid ones.
func FindCgroup2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2: %w", err)
	}
	defer f.Close()
	return parseCgroup2Mount(f)
}

// parseCgroup2Mount returns the mount point of the first cgroup2 file system
// in a mountinfo listing (proc(5)).
func parseCgroup2Mount(r io.Reader) (string, error) {
	mounts, err := mountinfo.Parse(r)
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			return m.Point, nil
		}
	}
	return "", errNoCgroup2
}

// checkCgroup2 reports whether path is a directory on a cgroup2 file system.
func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup %s: not a cgroup2 file system", path)
	}
	return nil
}
