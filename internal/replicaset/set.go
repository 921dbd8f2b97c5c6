package replicaset

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/tracing"
)

// Replica is one ready replica and its in-flight count.
type Replica struct {
	ID       string
	Addr     string
	Upstream *proxy.Upstream
	// Start is when the replica's start passed each phase, as its
	// endpoint record says; it never changes.
	Start tracing.StartPhases

	limit    atomic.Int32 // 0 means no limit
	inflight atomic.Int32
	// downUntil (unix ns) is set when a connection to the replica failed;
	// until then it is used only when no other replica has room.
	downUntil atomic.Int64
}

// MarkDown makes the replica a last resort for d, after a connection to it
// failed before any byte was sent.
func (r *Replica) MarkDown(d time.Duration) { r.downUntil.Store(time.Now().Add(d).UnixNano()) }

func (r *Replica) up() bool {
	d := r.downUntil.Load()
	if d == 0 {
		return true
	}
	if time.Now().UnixNano() < d {
		return false
	}
	r.downUntil.CompareAndSwap(d, 0)
	return true
}

// InFlight is how many requests the replica is serving through this process.
func (r *Replica) InFlight() int { return int(r.inflight.Load()) }

// Limit is the replica's hard concurrency limit; 0 means none.
func (r *Replica) Limit() int { return int(r.limit.Load()) }

func (r *Replica) tryInc() bool {
	limit := r.limit.Load()
	for {
		cur := r.inflight.Load()
		if limit > 0 && cur >= limit {
			return false
		}
		if r.inflight.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// Waiter is a place in a Set's queue. C receives the replica whose slot was
// handed over; the receiver owns that slot and must Release it.
type Waiter struct {
	C chan *Replica

	prev, next *Waiter
	queued     bool
}

// NewWaiter returns a waiter; it can be reused once it has left a queue and
// its C is empty.
func NewWaiter() *Waiter { return &Waiter{C: make(chan *Replica, 1)} }

// Set is one revision's replicas and its queue of waiting requests.
type Set struct {
	name     string
	replicas atomic.Pointer[[]*Replica]
	nwait    atomic.Int32

	mu         sync.Mutex
	head, tail *Waiter

	refs int // guarded by the registry's lock
}

func newSet(name string) *Set {
	s := &Set{name: name}
	s.replicas.Store(&[]*Replica{})
	return s
}

// Name is the revision.
func (s *Set) Name() string { return s.name }

// Len is the number of ready replicas.
func (s *Set) Len() int { return len(*s.replicas.Load()) }

// Replicas returns the current replicas; the slice must not be modified.
func (s *Set) Replicas() []*Replica { return *s.replicas.Load() }

// Waiting is the number of queued waiters.
func (s *Set) Waiting() int { return int(s.nwait.Load()) }

// TryAcquire claims a slot on a replica with spare capacity and returns it,
// or returns nil when none has any or when requests are already queued.
func (s *Set) TryAcquire() *Replica {
	if s.nwait.Load() > 0 {
		return nil
	}
	return s.acquire()
}

// acquire picks the less loaded of two random replicas, falling back to a
// scan when both are full.
func (s *Set) acquire() *Replica {
	reps := *s.replicas.Load()
	n := len(reps)
	switch n {
	case 0:
		return nil
	case 1:
		if reps[0].tryInc() {
			return reps[0]
		}
		return nil
	}
	x := rand.Uint64()
	i := int((x & 0xffffffff) * uint64(n) >> 32)
	j := int((x >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	a, b := reps[i], reps[j]
	aUp, bUp := a.up(), b.up()
	if (aUp == bUp && b.inflight.Load() < a.inflight.Load()) || (!aUp && bUp) {
		a, b, aUp, bUp = b, a, bUp, aUp
	}
	if aUp && a.tryInc() {
		return a
	}
	if bUp && b.tryInc() {
		return b
	}
	for k := 1; k <= n; k++ {
		if r := reps[(i+k)%n]; r.up() && r.tryInc() {
			return r
		}
	}
	// Only replicas marked down have room: better to try one than to wait
	// for a replica that may never come.
	for k := 1; k <= n; k++ {
		if r := reps[(i+k)%n]; r.tryInc() {
			return r
		}
	}
	return nil
}

// Release gives back a slot claimed by TryAcquire or received on a Waiter,
// handing it to the head of the queue if anyone waits.
func (s *Set) Release(r *Replica) {
	r.inflight.Add(-1)
	if s.nwait.Load() > 0 {
		s.dispatch()
	}
}

// Enqueue puts w at the back of the queue. If capacity is free it is handed
// out at once, so w.C may already hold a replica when Enqueue returns. It
// returns the queue length including w (before any hand-out).
func (s *Set) Enqueue(w *Waiter) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.prev, w.next, w.queued = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = w
	} else {
		s.head = w
	}
	s.tail = w
	n := s.nwait.Add(1)
	s.dispatchLocked()
	return int(n)
}

// Cancel takes w out of the queue. If w was already handed a slot, Cancel
// returns that replica and the caller must use or Release it.
func (s *Set) Cancel(w *Waiter) *Replica {
	s.mu.Lock()
	if w.queued {
		s.unlinkLocked(w)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// A grant happens under the lock, so if w was granted the replica is in
	// w.C by now, unless the caller already took it.
	select {
	case r := <-w.C:
		return r
	default:
		return nil
	}
}

func (s *Set) dispatch() {
	s.mu.Lock()
	s.dispatchLocked()
	s.mu.Unlock()
}

func (s *Set) dispatchLocked() {
	for s.head != nil {
		r := s.acquire()
		if r == nil {
			return
		}
		w := s.head
		s.unlinkLocked(w)
		w.C <- r
	}
}

func (s *Set) unlinkLocked(w *Waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		s.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		s.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	s.nwait.Add(-1)
}

// update replaces the replicas, keeping the Replica (and its in-flight
// count and pool) of every endpoint that stays. It returns the replicas that
// left, for the caller to close.
func (s *Set) update(eps []endpoint, upstream func(addr string) *proxy.Upstream) (gone []*Replica) {
	old := *s.replicas.Load()
	byID := make(map[string]*Replica, len(old))
	for _, r := range old {
		byID[r.ID] = r
	}
	next := make([]*Replica, 0, len(eps))
	for _, ep := range eps {
		r, ok := byID[ep.id]
		if ok && r.Addr == ep.addr {
			delete(byID, ep.id)
		} else {
			r = &Replica{ID: ep.id, Addr: ep.addr, Upstream: upstream(ep.addr), Start: ep.start}
		}
		r.limit.Store(int32(ep.limit))
		next = append(next, r)
	}
	s.replicas.Store(&next)
	for _, r := range byID {
		gone = append(gone, r)
	}
	if s.nwait.Load() > 0 {
		s.dispatch()
	}
	return gone
}
