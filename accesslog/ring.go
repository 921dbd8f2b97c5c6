package accesslog

import (
	"sync"
	"sync/atomic"
)

// rings keeps the last lines of each function in memory. A function's ring
// is made on its first line and holds at most size lines; its slots are
// reused, so a steady stream of lines allocates nothing.
type rings struct {
	size int
	m    sync.Map // function → *ring

	// followers counts readers waiting for lines, so that writers skip the
	// wake-up when nobody follows.
	followers atomic.Int64
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced after a line while followed
}

type ring struct {
	mu    sync.Mutex
	lines [][]byte
	next  uint64 // sequence number of the next line; line n is in lines[n%size]
}

func newRings(size int) *rings {
	return &rings{size: size, changed: make(chan struct{})}
}

func (rs *rings) add(function string, line []byte) {
	v, ok := rs.m.Load(function)
	if !ok {
		v, _ = rs.m.LoadOrStore(function, &ring{lines: make([][]byte, rs.size)})
	}
	r := v.(*ring)
	r.mu.Lock()
	i := r.next % uint64(len(r.lines))
	r.lines[i] = append(r.lines[i][:0], line...)
	r.next++
	r.mu.Unlock()
	if rs.followers.Load() != 0 {
		rs.mu.Lock()
		close(rs.changed)
		rs.changed = make(chan struct{})
		rs.mu.Unlock()
	}
}

// wait returns a channel closed after the next line of any function.
func (rs *rings) wait() <-chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.changed
}

// read appends copies of function's lines from sequence number from on (at
// most the last tail of them when tail > 0) to out, and returns the
// sequence number to read from next.
func (rs *rings) read(function string, from uint64, tail int, out [][]byte) ([][]byte, uint64) {
	v, ok := rs.m.Load(function)
	if !ok {
		return out, from
	}
	r := v.(*ring)
	r.mu.Lock()
	defer r.mu.Unlock()
	if oldest := r.next - min(r.next, uint64(len(r.lines))); from < oldest {
		from = oldest
	}
	if tail > 0 && r.next-from > uint64(tail) {
		from = r.next - uint64(tail)
	}
	for n := from; n < r.next; n++ {
		out = append(out, append([]byte(nil), r.lines[n%uint64(len(r.lines))]...))
	}
	return out, r.next
}
