// Package containerdproc finds a containerd to talk to, or runs a private one,
// the way k3s does: if a containerd answers on the configured socket, ebb uses
// it; otherwise it starts containerd with its own root, state, socket and
// generated config.toml under a data directory, supervises it, and restarts it
// if it dies.
//
// It only manages the daemon process. It must not create, list or remove
// images or containers (imagestore and the node agent do that), and it must
// never signal a containerd it did not start.
package containerdproc
