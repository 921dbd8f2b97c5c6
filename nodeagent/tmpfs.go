package nodeagent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// secretsTmpfsSize bounds the node's secrets tmpfs. Secrets are capped at
// 1 MiB each, and a tmpfs only uses the memory its files take.
const secretsTmpfsSize = "256m"

// mountSecretsTmpfs makes sure dir, where the agent writes secret values,
// is on a tmpfs, so that none of them reaches a disk: it mounts one there
// unless dir is on one already (the default RunDir, under /run, is). The
// mount stays, like /run itself: an agent can die without cleaning up, and
// unmounting under a running agent would send its next secrets to disk.
// Whoever removes the directory (a test) unmounts it first.
func mountSecretsTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size="+secretsTmpfsSize); err != nil {
		return fmt.Errorf("%s is not on a tmpfs, and mounting one there failed: %w", dir, err)
	}
	return nil
}
