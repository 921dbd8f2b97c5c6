package activator

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// hangups notices clients that close their connection while their request
// waits. One goroutine blocks in epoll_wait on EPOLLRDHUP for every watched
// socket, so a waiting request costs no goroutine and no polling of its own.
// fasthttp does not read from a connection while its handler runs, so this
// is the only way to learn that the client left.
//
// The goroutine starts with the first watch, so an activator that never
// holds a socket's request (its tests, whose clients are in-memory pipes)
// has no goroutine parked in a system call, which testing/synctest could
// not see as blocked.
type hangups struct {
	epfd    int
	wakeR   int
	wakeW   int
	mu      sync.Mutex
	watches map[int32]*watch
	started bool // the loop runs; guarded by mu
	closed  bool
	done    chan struct{}
}

type watch struct {
	h    *hangups
	fd   int32
	gone chan struct{}
	shut bool // guarded by h.mu
}

func newHangups() (*hangups, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, err
	}
	return &hangups{epfd: epfd, wakeR: p[0], wakeW: p[1], watches: make(map[int32]*watch), done: make(chan struct{})}, nil
}

func (h *hangups) loop() {
	defer close(h.done)
	events := make([]syscall.EpollEvent, 64)
	for {
		n, err := syscall.EpollWait(h.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		h.mu.Lock()
		for _, ev := range events[:n] {
			if ev.Fd == int32(h.wakeR) {
				h.mu.Unlock()
				return
			}
			if w := h.watches[ev.Fd]; w != nil && ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				delete(h.watches, ev.Fd)
				_ = syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_DEL, int(ev.Fd), nil)
				w.shut = true
				close(w.gone)
			}
		}
		h.mu.Unlock()
	}
}

// Watch returns a watch whose gone channel closes if the peer of c hangs
// up, or nil when c is not a socket (an in-memory pipe, say). The caller
// must Stop it before its handler returns.
func (h *hangups) Watch(c net.Conn) *watch {
	if h == nil {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var fd int32 = -1
	if rc.Control(func(f uintptr) { fd = int32(f) }) != nil || fd < 0 {
		return nil
	}
	w := &watch{h: h, fd: fd, gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP, Fd: fd}
	if err := syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		return nil
	}
	h.watches[fd] = w
	if !h.started {
		h.started = true
		go h.loop()
	}
	return w
}

// Gone is closed when the client hung up; nil for a nil watch.
func (w *watch) Gone() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.gone
}

// Stop ends the watch.
func (w *watch) Stop() {
	if w == nil {
		return
	}
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.shut || h.closed {
		return
	}
	w.shut = true
	delete(h.watches, w.fd)
	_ = syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_DEL, int(w.fd), nil)
}

// Close stops the loop and releases its descriptors.
func (h *hangups) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	started := h.started
	h.mu.Unlock()
	if started {
		_, _ = syscall.Write(h.wakeW, []byte{1})
		<-h.done
	}
	syscall.Close(h.epfd)
	syscall.Close(h.wakeR)
	syscall.Close(h.wakeW)
}
