package testenv

import (
	"os"
	"path/filepath"

	"github.com/ebbrun/ebb/internal/mountinfo"
)

// RemoveCgroup removes the cgroup at path (relative to each hierarchy's
// root, such as "ebb/fn-00001-abc") from every cgroup hierarchy mounted,
// v1 and v2, where it exists and is empty. Tests use it for cgroups runc
// left behind: those of a namespace, or of a container whose create was
// cut short.
func RemoveCgroup(path string) {
	mounts, _ := mountinfo.Read()
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			_ = os.Remove(filepath.Join(m.Point, path)) // rmdir: only if empty
		}
	}
}
