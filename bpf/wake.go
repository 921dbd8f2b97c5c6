package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// WakeEvent says that a process connected to the VIP of a function with no
// ready backend.
type WakeEvent struct {
	FunctionID uint32
	VIP        netip.AddrPort
	// PID is the connecting process (its thread group id).
	PID uint32
	// Cookie is the kernel's id of the connecting socket.
	Cookie uint64
	// KernelTime is when connect() ran, on the CLOCK_MONOTONIC clock.
	KernelTime time.Duration
}

// Age is how long ago connect() ran.
func (e WakeEvent) Age() time.Duration { return monotonicNow() - e.KernelTime }

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// wakeEventSize is sizeof(struct wake_event) in ebb.c.
const wakeEventSize = 32

// RunWakeEvents calls handle for every wake event, in order, until ctx is done
// or the loader is closed, and then returns nil. handle runs on the reading
// goroutine and should hand off anything slow: while it runs, events queue in
// the ring buffer and, once it is full, are dropped (see Stats.WakesDropped).
// Only one RunWakeEvents may run at a time.
func (l *Loader) RunWakeEvents(ctx context.Context, handle func(WakeEvent)) error {
	rd, err := l.openWakeReader()
	if err != nil {
		return err
	}
	defer l.closeWakeReader(rd)
	// Closing the reader is what interrupts a blocked Read.
	stop := context.AfterFunc(ctx, func() { _ = rd.Close() })
	defer stop()

	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read wake event: %w", err)
		}
		ev, err := decodeWakeEvent(rec.RawSample)
		if err != nil {
			return err
		}
		handle(ev)
	}
}

func (l *Loader) openWakeReader() (*ringbuf.Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	if l.readerBusy {
		return nil, errors.New("wake events are already being read")
	}
	rd, err := ringbuf.NewReader(l.objs.WakeEvents)
	if err != nil {
		return nil, fmt.Errorf("open wake ring buffer: %w", err)
	}
	l.reader, l.readerBusy = rd, true
	return rd, nil
}

func (l *Loader) closeWakeReader(rd *ringbuf.Reader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = rd.Close()
	l.reader, l.readerBusy = nil, false
}

func decodeWakeEvent(b []byte) (WakeEvent, error) {
	if len(b) < wakeEventSize {
		return WakeEvent{}, fmt.Errorf("wake event: %d bytes, want %d", len(b), wakeEventSize)
	}
	ne := binary.NativeEndian
	return WakeEvent{
		KernelTime: time.Duration(ne.Uint64(b[0:8])),
		Cookie:     ne.Uint64(b[8:16]),
		FunctionID: ne.Uint32(b[16:20]),
		PID:        ne.Uint32(b[20:24]),
		VIP:        fromAddr4(ebbAddr4{Addr: ne.Uint32(b[24:28]), Port: ne.Uint16(b[28:30])}),
	}, nil
}
