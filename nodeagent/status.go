package nodeagent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// statusDebounce lets a burst of changes (a scale-up of ten) become one
// write per revision, and keeps status writes off a cold start's path.
const statusDebounce = 10 * time.Millisecond

// statusHoldMax bounds how long status writes wait for starts to finish.
const statusHoldMax = 250 * time.Millisecond

// crashLoopAfter is when crashes become a crash loop: a replica waiting to
// restart after its crashLoopAfter-th consecutive crash (crashes with no
// ready period of Config.BackoffReset between them, the count that also
// sets its backoff) makes the node report its revision CrashLoop, and the
// activator fails the revision's requests fast. After fewer crashes the
// node reports Scaling, with the crash as its message, and requests wait
// for the restart: one crash is not a crash loop.
const crashLoopAfter = 3

func (a *Agent) startsInFlight() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.replicas {
		if r.phase == phaseStarting || (r.phase == phaseCreating && r.startRequested) {
			return true
		}
	}
	return false
}

// revisionStatuses computes what this node reports for each revision in
// play. Call with a.mu held.
func (a *Agent) revisionStatusesLocked(now time.Time) map[string]store.RevisionNodeStatus {
	type counts struct{ ready, pooled, backoff, looping, active int }
	byRev := map[string]*counts{}
	for _, r := range a.replicas {
		c := byRev[r.rev]
		if c == nil {
			c = &counts{}
			byRev[r.rev] = c
		}
		v := r.view()
		switch {
		case v.Phase == phaseReady:
			c.ready++
		case v.Phase == phasePooled:
			c.pooled++ // created, not just being created
		case v.Phase == phaseBackoff:
			c.backoff++
			if r.crashes >= crashLoopAfter {
				c.looping++
			}
		}
		if v.active() {
			c.active++
		}
	}
	out := make(map[string]store.RevisionNodeStatus, len(a.revs))
	for rev, rs := range a.revs {
		c := byRev[rev]
		if c == nil {
			c = &counts{}
		}
		want := a.desired[rev].Replicas
		st := store.RevisionNodeStatus{
			Revision: rev, Node: a.cfg.Node,
			Ready: c.ready, PreCreated: c.pooled,
			Restarts: rs.restarts, LastExitCode: rs.lastExit, LastLogLines: rs.lastLog,
		}
		switch {
		case rs.failMsg != "" && c.ready == 0:
			st.State, st.Message = api.RevisionFailed, rs.failMsg
		case c.looping > 0:
			st.State, st.Message = api.RevisionCrashLoop, rs.crashMsg
		case c.backoff > 0:
			st.State, st.Message = api.RevisionScaling, rs.crashMsg
		case want == 0 && c.ready == 0:
			st.State = api.RevisionIdle
		case c.ready == want && c.active == want:
			st.State = api.RevisionReady
		default:
			st.State = api.RevisionScaling
			st.Message = fmt.Sprintf("%d of %d replicas ready", c.ready, want)
		}
		out[rev] = st
	}
	return out
}

// statusLoop writes revision statuses when they change and deletes those
// of revisions that left the node.
func (a *Agent) statusLoop(ctx context.Context) error {
	a.mu.Lock()
	written := make(map[string]store.RevisionNodeStatus, len(a.seedStatus))
	for rev, st := range a.seedStatus {
		written[rev] = st
	}
	a.mu.Unlock()
	debounce := time.NewTimer(0)
	<-debounce.C
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	var holding time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.statusWake:
		case <-hold.C:
		}
		debounce.Reset(statusDebounce)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-debounce.C:
		}
		// A status write costs an fsync and some CPU; while a replica is
		// starting, hold writes back (the start's own publish kicks us)
		// for at most statusHoldMax.
		if a.startsInFlight() {
			if holding.IsZero() {
				holding = time.Now()
				hold.Reset(statusHoldMax)
			}
			if time.Since(holding) < statusHoldMax {
				continue
			}
		}
		holding = time.Time{}
		hold.Stop()
		now := time.Now()
		a.mu.Lock()
		if !a.synced {
			// Until the assignments are known, revisions at zero look
			// gone: writing now would delete their statuses.
			a.mu.Unlock()
			continue
		}
		cur := a.revisionStatusesLocked(now)
		a.updateGaugesLocked()
		a.mu.Unlock()
		for rev, st := range cur {
			old, ok := written[rev]
			if ok && sameStatus(old, st) {
				continue
			}
			st.UpdatedAt = now
			if err := a.txn(ctx, "write revision status",
				store.PutJSON(store.RevStatusKey(rev, a.cfg.Node), st, store.AnyVersion)); err != nil {
				continue // the next change or resync tries again
			}
			written[rev] = st
		}
		for rev := range written {
			if _, ok := cur[rev]; ok {
				continue
			}
			if err := a.txn(ctx, "delete revision status",
				store.Delete(store.RevStatusKey(rev, a.cfg.Node), store.AnyVersion)); err == nil {
				delete(written, rev)
			}
		}
	}
}

func sameStatus(a, b store.RevisionNodeStatus) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func (a *Agent) updateGaugesLocked() {
	running, pooled := 0, 0
	for _, r := range a.replicas {
		v := r.view()
		if v.Phase == phaseReady {
			running++
		}
		if v.Phase == phasePooled {
			pooled++
		}
	}
	a.met.running.Set(float64(running))
	a.met.pool.Set(float64(pooled))
	a.met.poolMemory.Set(float64(int64(pooled) * a.cfg.PoolEntryMemory))
}

func (a *Agent) heartbeatLoop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		a.heartbeat(ctx)
		live := a.liveReplicas()
		if err := a.logs.Prune(func(id string) bool { return live[id] }); err != nil {
			a.log.Warn("prune logs", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (a *Agent) liveReplicas() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	live := make(map[string]bool, len(a.replicas))
	for id := range a.replicas {
		live[id] = true
	}
	return live
}

// heartbeat writes the node record (capacity, allocation, images and
// pool) if it changed; see writeNodeRecord.
func (a *Agent) heartbeat(ctx context.Context) {
	ictx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	images, err := a.deps.Runtime.Images(ictx)
	cancel()
	if err != nil {
		a.log.Warn("list images", "err", err)
	}
	n := store.Node{
		Name:              a.cfg.Node,
		AgentAddr:         a.cfg.AdvertiseAddr,
		CPU:               a.cfg.CPU,
		MemoryBytes:       a.cfg.MemoryBytes,
		PoolCapacity:      a.policy.capacity(),
		PoolMemoryBudget:  a.cfg.PoolMemoryBudget,
		EBPF:              a.cfg.EBPF,
		HeartbeatInterval: api.D(a.cfg.LeaseRenewEvery),
	}
	if n.CPU == 0 {
		n.CPU = float64(runtime.NumCPU())
	}
	if n.MemoryBytes == 0 {
		n.MemoryBytes = memTotal()
	}
	a.mu.Lock()
	if err == nil {
		a.images = images
	}
	n.Images = append([]string{}, a.images...)
	for _, r := range a.replicas {
		v := r.view()
		switch {
		case v.active():
			n.AllocatedCPU += r.limits.cpu
			n.AllocatedMemory += r.limits.memory
			if v.Phase == phaseReady {
				n.Running++
			}
		case v.Phase == phasePooled:
			n.PoolSize++
		}
	}
	for _, jp := range a.jobPods {
		if jp.running {
			res := jp.pod.Spec.WithDefaults().Resources
			mem, _ := api.ParseBytes(res.Memory) // validated when the job was written
			n.AllocatedCPU += res.CPU
			n.AllocatedMemory += mem
		}
	}
	a.mu.Unlock()
	sort.Strings(n.Images)
	n.PoolMemoryBytes = int64(n.PoolSize) * a.cfg.PoolEntryMemory
	a.writeNodeRecord(ctx, n)
}

// memTotal reads the machine's memory from /proc/meminfo; 0 if unknown.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
