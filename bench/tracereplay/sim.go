package main

import (
	"container/heap"
	"fmt"
	"math"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
)

// simConfig is one policy under test and the data-plane model it runs in.
type simConfig struct {
	// Spec is the function's defaulted spec.
	Spec api.FunctionSpec
	// Policy plans keep-alive and pre-warm windows.
	Policy autoscaler.KeepAlivePolicy
	// PreCreatedTasks says whether the node holds the pre-created tasks the
	// policy asks for. Without it every start from zero is a full cold start.
	PreCreatedTasks bool
	// Tick is the Runner's decision period (2 s); Report is the routers' and
	// activators' stat interval (1 s).
	Tick, Report time.Duration
	// ColdStart and PreCreatedStart are how long a replica takes to become
	// ready from nothing and from a pre-created task; PreCreate is how long
	// creating a pre-created task takes. The defaults are the p50 figures of
	// shared/BENCHMARKS.md for containerd 1.6 + runc on this machine class.
	ColdStart, PreCreatedStart, PreCreate time.Duration
	// Horizon ends the simulation (the trace's day).
	Horizon time.Duration
}

// counts are what one simulated function produced.
type counts struct {
	Requests int64 `json:"requests"`
	// Warm requests found a ready replica with room.
	Warm int64 `json:"warm"`
	// Cold requests waited for a replica started from nothing.
	Cold int64 `json:"cold"`
	// PreCreated requests waited for a replica started from a pre-created
	// task: a warm-ish start.
	PreCreated int64 `json:"preCreated"`
	// Queued requests waited for a busy replica to free a slot (only with a
	// hard concurrency limit).
	Queued int64 `json:"queued"`
	// ColdReplicaStarts and PreCreatedReplicaStarts count replica starts.
	ColdReplicaStarts       int64 `json:"coldReplicaStarts"`
	PreCreatedReplicaStarts int64 `json:"preCreatedReplicaStarts"`
	// ReplicaSeconds is the time replicas existed; IdleReplicaSeconds the
	// part of it they were ready with no request in flight.
	ReplicaSeconds     float64 `json:"replicaSeconds"`
	IdleReplicaSeconds float64 `json:"idleReplicaSeconds"`
	// PreCreatedTaskSeconds is the time pre-created tasks were held.
	PreCreatedTaskSeconds float64 `json:"preCreatedTaskSeconds"`
	// Decisions counts Scaler.Scale calls (ticks and pokes).
	Decisions int64 `json:"decisions"`
	// PlanModes counts the policy's plan mode at each decision.
	PlanModes map[string]int64 `json:"planModes,omitempty"`
}

func (c *counts) add(o counts) {
	c.Requests += o.Requests
	c.Warm += o.Warm
	c.Cold += o.Cold
	c.PreCreated += o.PreCreated
	c.Queued += o.Queued
	c.ColdReplicaStarts += o.ColdReplicaStarts
	c.PreCreatedReplicaStarts += o.PreCreatedReplicaStarts
	c.ReplicaSeconds += o.ReplicaSeconds
	c.IdleReplicaSeconds += o.IdleReplicaSeconds
	c.PreCreatedTaskSeconds += o.PreCreatedTaskSeconds
	c.Decisions += o.Decisions
	for k, v := range o.PlanModes {
		if c.PlanModes == nil {
			c.PlanModes = map[string]int64{}
		}
		c.PlanModes[k] += v
	}
}

// replica states in the simulated node.
const (
	stStarting = iota
	stReady
	stDraining
	stGone
)

type replica struct {
	state     int
	readyAt   time.Duration
	fromPre   bool
	inFlight  int
	startedAt time.Duration
	idleFrom  time.Duration // valid while ready and idle
}

type completion struct {
	at  time.Duration
	rep *replica
}

type completionHeap []completion

func (h completionHeap) Len() int           { return len(h) }
func (h completionHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h completionHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *completionHeap) Push(x any)        { *h = append(*h, x.(completion)) }
func (h *completionHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// sim is one function's day: the data plane (a router with least-in-flight
// balancing, an activator that buffers when no replica has room and pokes
// the autoscaler), a node that runs what the autoscaler decides, and the
// real autoscaler.Scaler in between, all in simulated time.
type sim struct {
	cfg    simConfig
	base   time.Time
	scaler *autoscaler.Scaler
	limit  int

	now      time.Duration
	replicas []*replica
	done     completionHeap
	queue    []request // buffered in the activator, in arrival order

	// Pre-created task: held, or being created (ready at preReadyAt).
	preHeld     bool
	preCreating bool
	preReadyAt  time.Duration
	preSince    time.Duration

	// Reporter state for the current interval.
	area     float64 // concurrency × seconds
	maxConc  int
	arrivals int

	out counts
}

func newSim(cfg simConfig) *sim {
	base := time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)
	tracker := autoscaler.NewIdleTracker(autoscaler.DefaultHistogramRange)
	// The function was deployed long before the day began: no initial scale.
	s := autoscaler.NewScaler(cfg.Spec, tracker, cfg.Policy, autoscaler.Start{At: base, Resumed: true})
	return &sim{cfg: cfg, base: base, scaler: s, limit: cfg.Spec.Concurrency.HardLimit, out: counts{PlanModes: map[string]int64{}}}
}

func (s *sim) concurrency() int {
	n := len(s.queue)
	for _, r := range s.replicas {
		n += r.inFlight
	}
	return n
}

// advance moves the clock to t, integrating concurrency for the reporter.
func (s *sim) advance(t time.Duration) {
	if t > s.now {
		s.area += float64(s.concurrency()) * (t - s.now).Seconds()
		s.now = t
	}
}

func (s *sim) run(reqs []request) counts {
	next := 0
	nextReport, nextTick := s.cfg.Report, time.Duration(0)
	const never = time.Duration(math.MaxInt64)
	for {
		// The next event of each kind; ties resolve in the order below.
		tDone, tReady, tPre, tArr := never, never, never, never
		if len(s.done) > 0 {
			tDone = s.done[0].at
		}
		for _, r := range s.replicas {
			if r.state == stStarting && r.readyAt < tReady {
				tReady = r.readyAt
			}
		}
		if s.preCreating {
			tPre = s.preReadyAt
		}
		if next < len(reqs) {
			tArr = reqs[next].at
		}
		t := min(tDone, tReady, tPre, tArr, nextReport, nextTick)
		if t > s.cfg.Horizon {
			break
		}
		s.advance(t)
		switch t {
		case tDone:
			c := heap.Pop(&s.done).(completion)
			s.finish(c.rep)
		case tReady:
			for _, r := range s.replicas {
				if r.state == stStarting && r.readyAt == t {
					s.becomeReady(r)
				}
			}
		case tPre:
			s.preCreating, s.preHeld, s.preSince = false, true, t
		case tArr:
			s.arrive(reqs[next])
			next++
		case nextReport:
			s.report()
			nextReport += s.cfg.Report
		default: // nextTick
			s.decide(false)
			nextTick += s.cfg.Tick
		}
	}
	s.advance(s.cfg.Horizon)
	for _, r := range s.replicas {
		if r.state != stGone {
			s.stop(r)
		}
	}
	if s.preHeld {
		s.out.PreCreatedTaskSeconds += (s.now - s.preSince).Seconds()
	}
	return s.out
}

func (s *sim) arrive(q request) {
	s.arrivals++
	s.out.Requests++
	if r := s.pick(); r != nil {
		s.out.Warm++
		s.dispatch(r, q)
		return
	}
	s.queue = append(s.queue, q)
	if c := s.concurrency(); c > s.maxConc {
		s.maxConc = c
	}
	if len(s.queue) == 1 {
		// The activator pokes the autoscaler on the first buffered request.
		s.decide(true)
	}
}

// pick is the router: the ready replica with the fewest requests in flight,
// among those under the hard limit.
func (s *sim) pick() *replica {
	var best *replica
	for _, r := range s.replicas {
		if r.state != stReady || (s.limit > 0 && r.inFlight >= s.limit) {
			continue
		}
		if best == nil || r.inFlight < best.inFlight {
			best = r
		}
	}
	return best
}

func (s *sim) dispatch(r *replica, q request) {
	if r.inFlight == 0 {
		s.out.IdleReplicaSeconds += (s.now - r.idleFrom).Seconds()
	}
	r.inFlight++
	if c := s.concurrency(); c > s.maxConc {
		s.maxConc = c
	}
	heap.Push(&s.done, completion{at: s.now + q.dur, rep: r})
}

func (s *sim) finish(r *replica) {
	r.inFlight--
	if r.inFlight > 0 {
		return
	}
	switch r.state {
	case stDraining:
		s.stop(r)
		return
	case stReady:
		r.idleFrom = s.now
	}
	// A freed slot releases buffered requests (hard-limit case).
	if len(s.queue) > 0 && r.state == stReady {
		s.release(r, false)
	}
}

func (s *sim) becomeReady(r *replica) {
	r.state = stReady
	r.idleFrom = s.now
	s.release(r, true)
}

// release hands buffered requests, first in first out, to ready replicas
// with room. The requests count as cold or pre-created starts when they were
// waiting for a replica that has just started.
func (s *sim) release(started *replica, fresh bool) {
	for len(s.queue) > 0 {
		r := s.pick()
		if r == nil {
			return
		}
		q := s.queue[0]
		s.queue = s.queue[1:]
		switch {
		case fresh && started.fromPre:
			s.out.PreCreated++
		case fresh:
			s.out.Cold++
		default:
			s.out.Queued++
		}
		s.dispatch(r, q)
	}
}

// report is the routers and activator reporting one interval's stat.
func (s *sim) report() {
	st := api.RevisionStat{
		Revision: "fn", Reporter: "dataplane", Time: s.base.Add(s.now),
		AvgConcurrency: s.area / s.cfg.Report.Seconds(),
		MaxConcurrency: float64(s.maxConc),
		Requests:       float64(s.arrivals),
		Buffered:       len(s.queue),
		Interval:       api.D(s.cfg.Report),
	}
	if autoscaler.HasDemand(st) {
		s.scaler.Record(st)
	}
	s.area, s.arrivals, s.maxConc = 0, 0, s.concurrency()
}

func (s *sim) ready() int {
	n := 0
	for _, r := range s.replicas {
		if r.state == stReady {
			n++
		}
	}
	return n
}

// decide runs the autoscaler and has the node apply its decision at once.
func (s *sim) decide(poked bool) {
	now := s.base.Add(s.now)
	if poked {
		s.scaler.Poke(now)
	}
	res := s.scaler.Scale(now, s.ready())
	s.out.Decisions++
	s.out.PlanModes[res.Plan.Mode]++
	s.apply(res.Decision.Desired, res.PreCreated)
}

func (s *sim) apply(desired, preCreated int) {
	active := 0
	for _, r := range s.replicas {
		if r.state == stStarting || r.state == stReady {
			active++
		}
	}
	for ; active < desired; active++ {
		s.start()
	}
	// Scale down: cancel starts first, then idle replicas, then drain busy ones.
	for _, want := range []func(*replica) bool{
		func(r *replica) bool { return r.state == stStarting },
		func(r *replica) bool { return r.state == stReady && r.inFlight == 0 },
		func(r *replica) bool { return r.state == stReady },
	} {
		for i := len(s.replicas) - 1; i >= 0 && active > desired; i-- {
			if r := s.replicas[i]; want(r) {
				if r.inFlight > 0 {
					r.state = stDraining
				} else {
					s.stop(r)
				}
				active--
			}
		}
	}
	s.compact()
	if !s.cfg.PreCreatedTasks {
		preCreated = 0
	}
	switch have := s.preHeld || s.preCreating; {
	case preCreated > 0 && !have:
		s.preCreating, s.preReadyAt = true, s.now+s.cfg.PreCreate
	case preCreated == 0 && have:
		s.dropPre()
	}
}

func (s *sim) start() {
	r := &replica{state: stStarting, startedAt: s.now}
	if s.preHeld {
		s.dropPre()
		r.fromPre, r.readyAt = true, s.now+s.cfg.PreCreatedStart
		s.out.PreCreatedReplicaStarts++
	} else {
		r.readyAt = s.now + s.cfg.ColdStart
		s.out.ColdReplicaStarts++
	}
	s.replicas = append(s.replicas, r)
}

func (s *sim) dropPre() {
	if s.preHeld {
		s.out.PreCreatedTaskSeconds += (s.now - s.preSince).Seconds()
	}
	s.preHeld, s.preCreating = false, false
}

func (s *sim) stop(r *replica) {
	if r.state == stReady && r.inFlight == 0 {
		s.out.IdleReplicaSeconds += (s.now - r.idleFrom).Seconds()
	}
	s.out.ReplicaSeconds += (s.now - r.startedAt).Seconds()
	r.state = stGone
}

func (s *sim) compact() {
	keep := s.replicas[:0]
	for _, r := range s.replicas {
		if r.state != stGone {
			keep = append(keep, r)
		}
	}
	clear(s.replicas[len(keep):])
	s.replicas = keep
}

// simulate replays one function's requests under cfg.
func simulate(cfg simConfig, reqs []request) (counts, error) {
	if cfg.Tick <= 0 || cfg.Report <= 0 || cfg.Horizon <= 0 {
		return counts{}, fmt.Errorf("tick, report and horizon must be positive")
	}
	return newSim(cfg).run(reqs), nil
}
