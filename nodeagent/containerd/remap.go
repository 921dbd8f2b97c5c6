package containerd

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"

	"github.com/ebbrun/ebb/nodeagent"
)

// validIDMap refuses a mapping runc would refuse later, or that would wrap
// around the host's ids.
func validIDMap(m nodeagent.IDMap) error {
	switch {
	case m.Size == 0:
		return fmt.Errorf("user namespace maps no ids")
	case m.HostID == 0:
		return fmt.Errorf("user namespace maps container ids to the host's root")
	case uint64(m.HostID)+uint64(m.Size) > 1<<32-1:
		return fmt.Errorf("user namespace %d+%d runs past the host's last id", m.HostID, m.Size)
	}
	return nil
}

// withRemappedSnapshot gives the container a writable snapshot on top of
// the image's layers with every owner shifted into m (see shiftID), so
// that the container's root, which is m.HostID on the host, owns its root
// filesystem. The shifted copy is made once per image and mapping, and
// shared by every container that uses both (one per tenancy namespace,
// not per function); it is what containerd.WithRemappedSnapshot does,
// except that here a crash in the middle, or two creates at once, cannot
// leave a half-made snapshot under the key every later create would try.
//
// containerd keeps the shifted copy as long as a container uses it: the
// node agent's pool of pre-created tasks keeps it warm, and the first
// create after the last container of the image and namespace has gone
// pays for it again.
func (r *Runtime) withRemappedSnapshot(id string, e *imageEntry, m nodeagent.IDMap) containerd.NewContainerOpts {
	return func(ctx context.Context, _ *containerd.Client, c *containers.Container) error {
		sn := r.client.SnapshotService(r.cfg.Snapshotter)
		// A shifted copy that no container uses any more can be collected
		// by containerd between the moment it is found and the one the new
		// snapshot is made on it (which then keeps it): make it again.
		var err error
		for range 3 {
			var base string
			if base, err = r.remappedBase(ctx, sn, e.chainID, m); err != nil {
				return fmt.Errorf("image %s for user namespace %d+%d: %w", e.image.Name(), m.HostID, m.Size, err)
			}
			if _, err = sn.Prepare(ctx, id, base); err == nil {
				c.Snapshotter = r.cfg.Snapshotter
				c.SnapshotKey = id
				c.Image = e.image.Name()
				return nil
			}
			if !errdefs.IsNotFound(err) {
				break
			}
		}
		return fmt.Errorf("prepare snapshot %s: %w", id, err)
	}
}

// remappedKey names the shifted copy of the image chainID for m.
func remappedKey(chainID string, m nodeagent.IDMap) string {
	return fmt.Sprintf("%s-userns-%d-%d", chainID, m.HostID, m.Size)
}

// remappedBase returns the key of the committed shifted copy of chainID,
// making it if it does not exist. Creates that need the same copy at the
// same time wait for one to make it.
func (r *Runtime) remappedBase(ctx context.Context, sn snapshots.Snapshotter, chainID string, m nodeagent.IDMap) (string, error) {
	key := remappedKey(chainID, m)
	if _, err := sn.Stat(ctx, key); err == nil {
		return key, nil
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("stat %s: %w", key, err)
	}
	_, err, _ := r.remaps.Do(key, func() (any, error) {
		return nil, remap(ctx, sn, chainID, key, m)
	})
	return key, err
}

// remap shifts the owners of a fresh snapshot of parent, under a key of
// its own, and commits it as key.
func remap(ctx context.Context, sn snapshots.Snapshotter, parent, key string, m nodeagent.IDMap) (err error) {
	tmp := fmt.Sprintf("%s-remap-%d", key, time.Now().UnixNano())
	mounts, err := sn.Prepare(ctx, tmp, parent)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", tmp, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = sn.Remove(context.WithoutCancel(ctx), tmp)
		}
	}()
	if err := mount.WithTempMount(ctx, mounts, func(root string) error { return shiftOwners(root, m) }); err != nil {
		return fmt.Errorf("shift owners: %w", err)
	}
	if err := sn.Commit(ctx, key, tmp); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil // another runtime (a restarted agent's) made it meanwhile
		}
		return fmt.Errorf("commit %s: %w", key, err)
	}
	committed = true
	return nil
}

// shiftOwners changes the owner and group of every file under root, and
// of root, by shiftID. Lchown, so a symlink's target is never followed out
// of root. (chown clears setuid and setgid bits, which no-new-privileges
// makes useless in a replica anyway.)
func shiftOwners(root string, m nodeagent.IDMap) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner", p)
		}
		return os.Lchown(p, int(shiftID(st.Uid, m)), int(shiftID(st.Gid, m)))
	})
}

// shiftID is the host id of an image file's owner id in m. An id the
// namespace does not map stays as it is: it is then nobody's in the
// container (the overflow id), and never lands in the range of another
// namespace, as adding HostID to it would.
func shiftID(id uint32, m nodeagent.IDMap) uint32 {
	if id >= m.Size {
		return id
	}
	return m.HostID + id
}
