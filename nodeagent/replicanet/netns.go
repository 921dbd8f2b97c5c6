package replicanet

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread inside the network namespace of the file
// netnsPath: sockets fn opens stay in that namespace, and /proc/sys/net opened
// by fn is that namespace's. fn runs on a goroutine of its own. If the thread
// cannot return to its original namespace it stays locked, so that Go retires
// it instead of running other goroutines in the wrong namespace.
func Do(netnsPath string, fn func() error) error {
	target, err := os.Open(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// fn may end its goroutine (t.FailNow in a test): Do still returns.
		err := errors.New("in netns " + netnsPath + ": fn exited its goroutine")
		defer func() { errc <- err }()
		runtime.LockOSThread()
		err = inNetns(int(target.Fd()), netnsPath, fn)
	}()
	return <-errc
}

// inNetns is Do's body on the locked thread; it unlocks the thread only
// when it is back in its own namespace.
func inNetns(target int, path string, fn func() error) (err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("in netns %s: panic: %v", path, r)
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, fmt.Errorf("leave netns %s: %w", path, serr))
			return // the thread stays locked and dies with its goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// newNetns makes a network namespace and bind-mounts it on path, a file it
// creates (it must not exist).
func newNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- unshareOnto(path)
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// unshareOnto moves the locked thread into a new network namespace, mounts
// it on path and moves the thread back, unlocking it only then.
func unshareOnto(path string) error {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("unshare netns: %w", err)
	}
	mountErr := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
	if mountErr != nil {
		mountErr = fmt.Errorf("bind-mount netns on %s: %w", path, mountErr)
	}
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: Go ends this thread with its goroutine.
		return errors.Join(mountErr, fmt.Errorf("return to own netns: %w", err))
	}
	runtime.UnlockOSThread()
	return mountErr
}

// removeNetns unmounts and removes a netns file; a missing one is fine.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// isNetns reports whether path is a mounted network namespace.
func isNetns(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// writeSysctl writes a /proc/sys file; it is per netns of the calling thread
// for net.*.
func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// sharedDir makes dir a mount point of its own with shared propagation, as
// `ip netns` does for /run/netns. A mount namespace created later (a systemd
// unit's, a container's before it pivots) copies the netns mounts below dir;
// as peers of a shared mount those copies go when Release unmounts the
// original, instead of keeping the namespace alive.
func sharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns dir: %w", err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount netns dir %s on itself: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make netns dir %s shared: %w", dir, err)
	}
	return nil
}
