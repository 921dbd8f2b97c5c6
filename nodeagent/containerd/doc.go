// Package containerd implements nodeagent.Runtime with containerd (the v1.7
// Go client, against containerd 1.6 or later) and runc.
//
// Every container lives in one namespace (default "ebb") with its own
// overlay snapshot and an OCI spec built from the agent's ContainerSpec:
// argv and environment as given, the image's working directory and user,
// a read-only root filesystem with a tmpfs /tmp, no new privileges,
// containerd's default seccomp profile and capability set, CFS quota,
// memory and pids limits, and host networking (or a given network
// namespace). Process output reaches the agent through fifos in a
// directory that outlives the agent, so a restarted agent reattaches to it.
// CheckExecutable inspects the entrypoint inside a read-only view of the
// image, so that a bad image is a clear message rather than a crash loop.
//
// It must not decide anything: when to create, start or stop is the
// agent's business. It does not import images either (internal/imagestore
// does); it only unpacks one that is present but not yet unpacked.
package containerd
