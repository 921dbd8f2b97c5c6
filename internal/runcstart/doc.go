// Package runcstart starts a container that runc has already created,
// without running runc.
//
// A pre-created task is a container whose init process (runc init) has set
// up every namespace, mount and cgroup and is blocked opening the
// container's exec fifo for writing. "runc start" only opens that fifo for
// reading, reads the byte init writes, waits for init to exec the user's
// program (which closes the fifo) and removes the fifo; runc then reports the
// container as running. On the benchmark machine starting runc, a 10 MB Go
// program that loads its whole state and cgroup manager first, takes about
// 30 ms of the ~50 ms that task.Start costs. Start does the same handshake in
// well under a millisecond.
//
// containerd's runc shim runs whatever binary its BinaryName option names,
// with runc's command line. cmd/ebb-runc is that binary: it handles a plain
// "start ID" with Start and hands every other command, and every start it
// is not sure of, to the real runc unchanged. containerd's own state stays
// true: the shim sees a start that succeeded, marks the task running, sends
// its TaskStart event and begins watching the container for OOM kills.
//
// Release lets the node agent go one step further: it opens the fifo itself,
// so the program runs without waiting for containerd, its shim and a
// process exec, and leaves a marker in the container's state directory.
// The task.Start the agent sends once the program answers then reaches
// ebb-runc's Start, which finds the marker, checks that init still runs,
// and succeeds: containerd learns of the start after the first request
// instead of before it. On the benchmark machine that takes about 20 ms of
// CPU, which a cold start no longer waits for.
//
// Start follows runc 1.1's protocol (libcontainer's exec and readFromExecFifo):
// the fifo is <root>/<id>/exec.fifo, a start is good when init wrote at least
// one byte before closing it, and init's pid and start time come from
// <root>/<id>/state.json so that a dead init fails the start instead of
// hanging it.
package runcstart
