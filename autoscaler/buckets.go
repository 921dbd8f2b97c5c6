package autoscaler

import "time"

// bucketWidth is the resolution of every metric window: one second, as in
// Knative's timed buckets. Windows are whole numbers of buckets.
const bucketWidth = time.Second

// secondOf is the index of the one-second bucket holding t.
func secondOf(t time.Time) int64 {
	ns := t.UnixNano()
	s := ns / int64(bucketWidth)
	if ns < 0 && ns%int64(bucketWidth) != 0 {
		s-- // floor, not truncation toward zero
	}
	return s
}

// timedBuckets is a ring of per-second sums over the last len(vals) seconds:
// Knative's "timed float64 buckets" without the lock, because its single
// owner (a Scaler) never shares it.
//
// Each bucket holds the sum of what every reporter attributed to that second,
// so summing across reporters is just adding into the bucket.
type timedBuckets struct {
	// vals is allocated by the first add: most revisions of a large
	// deployment sit at zero and never get a report.
	vals []float64
	size int
	// newest is the second of the newest bucket the ring holds; buckets older
	// than newest-len(vals)+1 have been recycled.
	newest int64
	// first is the first second of the current run of data. A gap longer than
	// the ring resets it, so that averages right after a quiet period are taken
	// over the seconds that actually have data, not diluted by stale zeros.
	first int64
	empty bool
}

// ringSlack is how many seconds the ring keeps beyond the longest window:
// windows end at the reporters' watermark, which trails the newest second
// written by up to a reporter's stale age.
const ringSlack = 16

func newTimedBuckets(window time.Duration) *timedBuckets {
	return &timedBuckets{size: int(window/bucketWidth) + ringSlack, empty: true}
}

// add attributes v to second sec. Values for seconds that the ring has
// already recycled are dropped: they are older than any window.
func (b *timedBuckets) add(sec int64, v float64) {
	if b.vals == nil {
		b.vals = make([]float64, b.size)
	}
	n := int64(len(b.vals))
	if b.empty {
		clear(b.vals)
		b.newest, b.first, b.empty = sec, sec, false
	}
	switch {
	case sec > b.newest:
		if sec-b.newest >= n {
			// Quiet for longer than the ring: start a fresh run.
			clear(b.vals)
			b.first = sec
		} else {
			for s := b.newest + 1; s <= sec; s++ {
				b.vals[mod(s, n)] = 0
			}
		}
		b.newest = sec
	case sec <= b.newest-n:
		return
	}
	if sec < b.first {
		b.first = sec
	}
	b.vals[mod(sec, n)] += v
}

// average returns the mean per-second value over the complete seconds in
// [end-window, end), where end is the second holding now: that second is
// still being reported, so it is left out. Seconds before the current run
// of data began do not count toward the divisor. With no data in the window
// the average is 0.
func (b *timedBuckets) average(now time.Time, window time.Duration) float64 {
	if b.empty {
		return 0
	}
	end := secondOf(now)
	w := int64(window / bucketWidth)
	if w < 1 {
		w = 1
	}
	n := int64(len(b.vals))
	w = min(w, n)
	start := end - w
	if start < b.first {
		start = b.first
	}
	if start >= end {
		return 0
	}
	sum := 0.0
	for s := start; s < end; s++ {
		if s > b.newest || s <= b.newest-n {
			continue // recycled or not yet written: zero
		}
		sum += b.vals[mod(s, n)]
	}
	return sum / float64(end-start)
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}
