// Package fastconn wraps TCP connections so that their reads and writes
// skip the Go runtime's blocking-syscall bookkeeping.
//
// A *net.TCPConn enters every read(2) and write(2) through
// runtime.entersyscall. On a proxy with one P (GOMAXPROCS=1) on a busy
// machine that is costly: when the kernel preempts the thread inside a
// syscall, sysmon sees the P stuck in it and hands the P to another thread,
// and the two threads then trade it back and forth. Socket I/O in Go is
// non-blocking (a read with nothing to read returns EAGAIN and the goroutine
// parks in the netpoller), so it never needs that hand-off. Conn issues the
// same read(2) and write(2) calls as raw syscalls through the connection's
// syscall.RawConn: the netpoller, deadlines and Close behave exactly as they
// do for the wrapped connection, and EAGAIN still parks the goroutine.
//
// A client that writes a request and then reads its reply can use
// WriteAndAwaitReply instead of Write, which parks until the reply is
// readable and so skips the read(2) that would find nothing yet: one system
// call less per proxied request. On a VM like the benchmark machine system
// calls are most of what a proxied request costs.
//
// Measured on the router (bench/RESULTS.md, "Data plane"): fewer context
// switches and less system time per proxied request.
package fastconn
