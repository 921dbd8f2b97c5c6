package netnscookie

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Current is the cookie of the calling thread's network namespace: a
// socket belongs to the namespace it is made in, and SO_NETNS_COOKIE reads
// that namespace's. Inside another namespace, call it on a thread that
// entered it (replicanet.Do).
func Current() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: SO_NETNS_COOKIE: %w", err)
	}
	return cookie, nil
}
