package bpfsync

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's worker pool cleaner and date updater outlive Shutdown.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// fakeLoader keeps what a bpf.Loader would hold in its maps. It stands in
// for the kernel in these tests of the sync logic; the real loader is
// driven end to end by e2e/ebpf_test.go.
type fakeLoader struct {
	mu      sync.Mutex
	ports   map[uint16]bool
	tracked map[uint16]bool
	loads   map[uint16]bpf.PortLoad // of tracked ports, as the test sets them
	vips    map[netip.AddrPort]bpf.VIP
	setVIPs int
	wakes   chan bpf.WakeEvent
}

func newFakeLoader() *fakeLoader {
	return &fakeLoader{ports: map[uint16]bool{}, tracked: map[uint16]bool{}, loads: map[uint16]bpf.PortLoad{}, vips: map[netip.AddrPort]bpf.VIP{}, wakes: make(chan bpf.WakeEvent)}
}

func (f *fakeLoader) AllowPort(p uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ports[p] = true
	return nil
}

func (f *fakeLoader) DisallowPort(p uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ports, p)
	return nil
}

func (f *fakeLoader) TrackPort(p uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ports[p] {
		return fmt.Errorf("track port %d: not allowed", p)
	}
	f.tracked[p] = true
	return nil
}

func (f *fakeLoader) UntrackPort(p uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tracked, p)
	return nil
}

func (f *fakeLoader) PortLoads() (map[uint16]bpf.PortLoad, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint16]bpf.PortLoad{}
	for p := range f.tracked {
		out[p] = f.loads[p]
	}
	return out, nil
}

func (f *fakeLoader) setLoad(p uint16, l bpf.PortLoad) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads[p] = l
}

func (f *fakeLoader) trackedPorts() map[uint16]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.tracked)
}

func (f *fakeLoader) SetVIP(v bpf.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vips[v.Addr] = v
	f.setVIPs++
	return nil
}

func (f *fakeLoader) DeleteVIP(addr netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vips, addr)
	return nil
}

func (f *fakeLoader) RunWakeEvents(ctx context.Context, handle func(bpf.WakeEvent)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.wakes:
			handle(ev)
		}
	}
}

func (f *fakeLoader) state() (map[uint16]bool, map[netip.AddrPort]bpf.VIP) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.ports), maps.Clone(f.vips)
}

// activations records the revisions the syncer activates.
type activations struct {
	mu   sync.Mutex
	revs []string
	got  chan string
}

func (a *activations) Activate(_ context.Context, rev string) error {
	a.mu.Lock()
	a.revs = append(a.revs, rev)
	a.mu.Unlock()
	a.got <- rev
	return nil
}

// reports collects what the syncer reports to the autoscaler.
type reports chan []api.RevisionStat

// Report drops what the test does not read, so the syncer never blocks.
func (r reports) Report(stats []api.RevisionStat) {
	select {
	case r <- stats:
	default:
	}
}

type syncEnv struct {
	t       *testing.T
	st      store.Store
	loader  *fakeLoader
	acts    *activations
	reports reports
	s       *Syncer
}

func newSyncEnv(t *testing.T) *syncEnv {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	e := &syncEnv{t: t, st: st, loader: newFakeLoader(), acts: &activations{got: make(chan string, 16)}, reports: make(reports, 64)}
	e.s, err = New(Config{Node: "n1", RouterPort: 8080, RetryInterval: 10 * time.Millisecond, StatsInterval: 5 * time.Millisecond},
		Deps{Store: st, Loader: e.loader, Activator: e.acts, Stats: e.reports})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, st.Close())
	})
	return e
}

func (e *syncEnv) txn(ops ...store.Op) {
	e.t.Helper()
	_, err := e.st.Txn(context.Background(), ops...)
	require.NoError(e.t, err)
}

func (e *syncEnv) putFunction(name string, traffic ...api.TrafficTarget) {
	e.t.Helper()
	latest := name + "-00001"
	if len(traffic) > 0 {
		latest = traffic[len(traffic)-1].Revision
	}
	e.txn(store.PutJSON(store.FunctionKey(name), store.Function{Name: name, LatestRevision: latest, Traffic: traffic}, store.AnyVersion))
}

func (e *syncEnv) endpoint(fn, rev, replica, node string, port int) store.Op {
	return store.PutJSON(store.EndpointKey(rev, replica),
		store.Endpoint{Function: fn, Revision: rev, Replica: replica, Node: node, Addr: fmt.Sprintf("127.0.0.1:%d", port)}, store.AnyVersion)
}

// eventually polls the fake loader until cond holds.
func (e *syncEnv) eventually(what string, cond func(ports map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return cond(e.loader.state()) }, 5*time.Second, time.Millisecond, what)
}

func (e *syncEnv) vipRecord(fn string) (store.VIP, bool) {
	e.t.Helper()
	v, _, err := store.GetJSON[store.VIP](context.Background(), e.st, store.VIPKey(fn))
	if err != nil {
		return store.VIP{}, false
	}
	return v, true
}

var (
	vip0 = netip.MustParseAddrPort("127.77.0.1:80")
	vip1 = netip.MustParseAddrPort("127.77.0.2:80")
)

func TestSyncer(t *testing.T) {
	e := newSyncEnv(t)

	// Two functions: a warm one with two replicas on this node and one on
	// another, and a cold one. Port keys exist for this node and another.
	e.putFunction("alpha")
	e.putFunction("beta")
	e.txn(
		e.endpoint("alpha", "alpha-00001", "r1", "n1", 9001),
		e.endpoint("alpha", "alpha-00001", "r2", "n1", 9002),
		e.endpoint("alpha", "alpha-00001", "r3", "n2", 9003),
		store.Put(store.PortKey("n1", 9001), []byte(`"r1"`), store.AnyVersion),
		store.Put(store.PortKey("n1", 9002), []byte(`"r2"`), store.AnyVersion),
		store.Put(store.PortKey("n1", 9004), []byte(`"pooled"`), store.AnyVersion),
		store.Put(store.PortKey("n2", 9003), []byte(`"r3"`), store.AnyVersion),
	)

	t.Run("VIPs allocated once, lowest index first, by name", func(t *testing.T) {
		require.Eventually(t, func() bool {
			_, a := e.vipRecord("alpha")
			_, b := e.vipRecord("beta")
			return a && b
		}, 5*time.Second, time.Millisecond)
		a, _ := e.vipRecord("alpha")
		b, _ := e.vipRecord("beta")
		assert.Equal(t, store.VIP{Function: "alpha", Index: 0, Addr: "127.77.0.1:80"}, store.VIP{Function: a.Function, Index: a.Index, Addr: a.Addr})
		assert.Equal(t, store.VIP{Function: "beta", Index: 1, Addr: "127.77.0.2:80"}, store.VIP{Function: b.Function, Index: b.Index, Addr: b.Addr})
		slot, err := e.st.Get(context.Background(), store.VIPSlotKey(0))
		require.NoError(t, err)
		assert.JSONEq(t, `"alpha"`, string(slot.Value), "the index is claimed")
	})

	t.Run("router and this node's replica ports allow-listed", func(t *testing.T) {
		e.eventually("ports", func(ports map[uint16]bool, _ map[netip.AddrPort]bpf.VIP) bool {
			return maps.Equal(ports, map[uint16]bool{8080: true, 9001: true, 9002: true, 9004: true})
		})
		require.Eventually(t, func() bool {
			return maps.Equal(e.loader.trackedPorts(), map[uint16]bool{9001: true, 9002: true, 9004: true})
		}, 5*time.Second, time.Millisecond, "replica ports are tracked for request accounting, the router's is not")
	})

	t.Run("VIP load is reported for the replica's revision", func(t *testing.T) {
		// Two VIP requests in flight on r2 (port 9002), one more arriving;
		// the pooled port 9004 has no endpoint, so its load has no owner.
		require.Eventually(t, func() bool { return e.s.replicaRevisions()[9002] == "alpha-00001" }, 5*time.Second, time.Millisecond)
		e.loader.setLoad(9004, bpf.PortLoad{VIPRequests: 7, VIPOpen: 1})
		e.loader.setLoad(9002, bpf.PortLoad{VIPRequests: 2, VIPOpen: 2, VIPBusy: time.Second})
		requests := uint64(3)
		e.loader.setLoad(9002, bpf.PortLoad{VIPRequests: requests, VIPOpen: 2, VIPBusy: 2 * time.Second})
		deadline := time.After(5 * time.Second)
		for {
			select {
			case stats := <-e.reports:
				require.Len(t, stats, 1)
				st := stats[0]
				assert.Equal(t, "alpha-00001", st.Revision)
				assert.Equal(t, "vip@n1", st.Reporter)
				assert.GreaterOrEqual(t, st.MaxConcurrency, 2.0)
				if st.Requests == 0 {
					// Both readings behind this report already had the
					// requests (the first reading after the load was
					// set may have come before the syncer knew the
					// port's revision). One more request arrives, so a
					// later report must count it.
					requests++
					e.loader.setLoad(9002, bpf.PortLoad{VIPRequests: requests, VIPOpen: 2, VIPBusy: 2 * time.Second})
					continue
				}
				e.loader.setLoad(9002, bpf.PortLoad{})
				e.loader.setLoad(9004, bpf.PortLoad{})
				return
			case <-deadline:
				t.Fatal("no VIP load reported")
			}
		}
	})

	t.Run("warm VIP has every ready replica, cold VIP none", func(t *testing.T) {
		e.eventually("alpha warm, beta cold", func(_ map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool {
			return len(vips[vip0].Backends) == 3 && vips[vip1].Addr == vip1 && len(vips[vip1].Backends) == 0
		})
		_, vips := e.loader.state()
		assert.Equal(t, uint32(1), vips[vip0].FunctionID)
		assert.Equal(t, uint32(2), vips[vip1].FunctionID)
		for _, b := range vips[vip0].Backends {
			assert.Equal(t, uint32(100*weightScale/3), b.Weight)
		}
		name, ok := e.s.FunctionByID(2)
		assert.True(t, ok)
		assert.Equal(t, "beta", name)
	})

	t.Run("a wake event activates the routed revision", func(t *testing.T) {
		e.loader.wakes <- bpf.WakeEvent{FunctionID: 2, VIP: vip1}
		select {
		case rev := <-e.acts.got:
			assert.Equal(t, "beta-00001", rev)
		case <-time.After(5 * time.Second):
			t.Fatal("no activation")
		}
		e.loader.wakes <- bpf.WakeEvent{FunctionID: 99}
		require.Eventually(t, func() bool { return counterValue(t, e.s.m.wakesUnknown) == 1 }, 5*time.Second, time.Millisecond,
			"an unknown function id is only counted")
		e.acts.mu.Lock()
		assert.Equal(t, []string{"beta-00001"}, e.acts.revs)
		e.acts.mu.Unlock()
	})

	t.Run("traffic split weights the backends", func(t *testing.T) {
		e.putFunction("alpha", api.TrafficTarget{Revision: "alpha-00001", Percent: 75}, api.TrafficTarget{Revision: "alpha-00002", Percent: 25})
		e.txn(e.endpoint("alpha", "alpha-00002", "r9", "n1", 9009))
		e.eventually("75/25 over 3+1 replicas", func(_ map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool {
			ws := map[string]uint32{}
			for _, b := range vips[vip0].Backends {
				ws[b.Addr.String()] = b.Weight
			}
			return maps.Equal(ws, map[string]uint32{
				"127.0.0.1:9001": 25000, "127.0.0.1:9002": 25000, "127.0.0.1:9003": 25000, "127.0.0.1:9009": 25000,
			})
		})
	})

	t.Run("replica gone: port disallowed, backend removed", func(t *testing.T) {
		e.txn(store.Delete(store.EndpointKey("alpha-00001", "r1"), store.AnyVersion),
			store.Delete(store.PortKey("n1", 9001), store.AnyVersion))
		e.eventually("r1 gone", func(ports map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool {
			return !ports[9001] && ports[9002] && len(vips[vip0].Backends) == 3
		})
		assert.False(t, e.loader.trackedPorts()[9001])
	})

	t.Run("unchanged state is not reprogrammed", func(t *testing.T) {
		e.loader.mu.Lock()
		before := e.loader.setVIPs
		e.loader.mu.Unlock()
		// An unrelated write (another node's port) wakes the syncer.
		e.txn(store.Put(store.PortKey("n2", 9100), []byte(`"x"`), store.AnyVersion))
		e.txn(store.Put(store.PortKey("n1", 9100), []byte(`"x"`), store.AnyVersion))
		e.eventually("port 9100", func(ports map[uint16]bool, _ map[netip.AddrPort]bpf.VIP) bool { return ports[9100] })
		e.loader.mu.Lock()
		defer e.loader.mu.Unlock()
		assert.Equal(t, before, e.loader.setVIPs)
	})

	t.Run("deleted function: VIP unpublished and freed, index reused", func(t *testing.T) {
		e.txn(store.Delete(store.FunctionKey("alpha"), store.AnyVersion))
		e.eventually("alpha's VIP gone", func(_ map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool {
			_, ok := vips[vip0]
			return !ok
		})
		require.Eventually(t, func() bool { _, ok := e.vipRecord("alpha"); return !ok }, 5*time.Second, time.Millisecond)
		_, err := e.st.Get(context.Background(), store.VIPSlotKey(0))
		assert.ErrorIs(t, err, store.ErrNotFound, "the index is free again")

		e.putFunction("gamma")
		require.Eventually(t, func() bool { _, ok := e.vipRecord("gamma"); return ok }, 5*time.Second, time.Millisecond)
		g, _ := e.vipRecord("gamma")
		assert.Equal(t, uint32(0), g.Index, "the lowest free index")
		e.eventually("gamma programmed cold at alpha's old address", func(_ map[uint16]bool, vips map[netip.AddrPort]bpf.VIP) bool {
			v, ok := vips[vip0]
			return ok && v.FunctionID == 1 && len(v.Backends) == 0
		})
		name, _ := e.s.FunctionByID(1)
		assert.Equal(t, "gamma", name)
	})
}

// TestSyncersOnTwoNodesAgree runs two syncers on one store: they race for
// the same allocations, and every function still ends with one VIP, no two
// sharing an index.
func TestSyncersOnTwoNodesAgree(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, node := range []string{"n1", "n2"} {
		s, err := New(Config{Node: node, RetryInterval: 5 * time.Millisecond}, Deps{Store: st, Loader: newFakeLoader()})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, s.Run(ctx)) }()
	}
	defer func() { cancel(); wg.Wait() }()

	const n = 40
	for i := range n {
		name := fmt.Sprintf("fn%02d", i)
		_, err := st.Txn(ctx, store.PutJSON(store.FunctionKey(name), store.Function{Name: name, LatestRevision: name + "-00001"}, store.MustNotExist))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		recs, _, err := store.ListJSON[store.VIP](ctx, st, store.PrefixVIPs)
		return err == nil && len(recs) == n
	}, 10*time.Second, 5*time.Millisecond)
	recs, _, err := store.ListJSON[store.VIP](ctx, st, store.PrefixVIPs)
	require.NoError(t, err)
	var indexes []uint32
	for _, r := range recs {
		indexes = append(indexes, r.Value.Index)
	}
	slices.Sort(indexes)
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i)
	}
	assert.Equal(t, want, indexes, "indexes 0..n-1, each once")
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// TestSyncerOnSharedCaches runs a Syncer on caches it is handed, as ebbd
// does, with a cache of every node's port claims: it reads this node's
// only, and opens no watch of its own.
func TestSyncerOnSharedCaches(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	defer st.Close()
	fns := store.NewCache[store.Function](st, store.PrefixFunctions, store.CacheConfig[store.Function]{})
	eps := store.NewCache[store.Endpoint](st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{})
	vips := store.NewCache[store.VIP](st, store.PrefixVIPs, store.CacheConfig[store.VIP]{})
	ports := store.NewCache[string](st, store.PrefixPorts, store.CacheConfig[string]{})
	loader := newFakeLoader()
	s, err := New(Config{Node: "n1", RouterPort: 8080, RetryInterval: 10 * time.Millisecond},
		Deps{Store: st, Loader: loader, Functions: fns, Endpoints: eps, VIPs: vips, Ports: ports})
	require.NoError(t, err)
	assert.Empty(t, s.ownCaches, "every cache was handed over")

	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range []func(context.Context) error{fns.Run, eps.Run, vips.Run, ports.Run} {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error { return s.Run(gctx) })
	defer func() {
		cancel()
		require.NoError(t, g.Wait())
	}()

	_, err = st.Txn(ctx,
		store.PutJSON(store.FunctionKey("alpha"), store.Function{Name: "alpha", LatestRevision: "alpha-00001"}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("alpha-00001", "r1"),
			store.Endpoint{Function: "alpha", Revision: "alpha-00001", Replica: "r1", Node: "n1", Addr: "127.0.0.1:9001"}, store.AnyVersion),
		store.Put(store.PortKey("n1", 9001), []byte(`"r1"`), store.AnyVersion),
		store.Put(store.PortKey("n2", 9003), []byte(`"r3"`), store.AnyVersion))
	require.NoError(t, err)
	// The syncer programs the loader from the store's watches' goroutines.
	require.Eventually(t, func() bool {
		got, vipsNow := loader.state()
		return maps.Equal(got, map[uint16]bool{8080: true, 9001: true}) && len(vipsNow) == 1
	}, 5*time.Second, time.Millisecond, "this node's ports and the function's VIP")
}
