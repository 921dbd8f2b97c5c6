// Package containerd implements nodeagent.Runtime with containerd (the v1.7
// Go client, against containerd 1.6 or later) and runc.
//
// Every container lives in one namespace (default "ebb") with its own
// overlay snapshot and an OCI spec built from the agent's ContainerSpec:
// argv and environment as given, the image's working directory and user
// (ContainerSpec.DefaultUser when it names none), a read-only root
// filesystem with a tmpfs /tmp, no new privileges, containerd's default
// seccomp profile, a bounding set of seven capabilities (CHOWN, FOWNER,
// FSETID, KILL, SETGID, SETUID, NET_BIND_SERVICE) held only by uid 0,
// runc's masked and read-only paths, CFS quota, memory and pids limits,
// and host networking (or a given network namespace).
//
// With ContainerSpec.UserNS the container gets a user namespace of its
// own, which maps its ids 0..Size-1 to an unprivileged host range (one per
// tenancy namespace, from nodeagent/idrange), and a root filesystem whose
// owners are shifted into that range: a copy of the image's layers made
// once per image and range (remap.go) and shared by every container of
// both. Its /sys is an empty read-only tmpfs, because a sysfs cannot be
// mounted from a user namespace that does not own the network namespace
// (see withEmptySys).
//
// Process output reaches the agent through fifos in a directory that
// outlives the agent, so a restarted agent reattaches to it.
// CheckExecutable inspects the entrypoint inside a read-only view of the
// image, so that a bad image is a clear message rather than a crash loop.
//
// It must not decide anything: when to create, start or stop is the
// agent's business. It does not import images either (internal/imagestore
// does); it only unpacks one that is present but not yet unpacked.
package containerd
