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
	"testing/synctest"
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

// The Syncer tests run in testing/synctest bubbles: the embedded store,
// its watches, the Syncer's caches and its loops all live in the bubble,
// and the fake loader stands in for the kernel. synctest.Wait returns once
// every change the test wrote has gone through the caches, every pass it
// kicked has run and every store write of those passes has come back, so
// a test asserts the loader's state at an exact instant. The bubble's
// clock moves only when a test sleeps, so the load reports come exactly
// when the test advances it by StatsInterval, and never otherwise.

// statsInterval is the syncEnv's Config.StatsInterval.
const statsInterval = 5 * time.Millisecond

type syncEnv struct {
	t       *testing.T
	st      store.Store
	loader  *fakeLoader
	acts    *activations
	reports reports
	s       *Syncer
}

// newSyncEnv runs a Syncer for node n1 over a fresh embedded store; call
// it in a bubble.
func newSyncEnv(t *testing.T, tweaks ...func(*Config)) *syncEnv {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	e := &syncEnv{t: t, st: st, loader: newFakeLoader(), acts: &activations{got: make(chan string, 16)}, reports: make(reports, 64)}
	cfg := Config{Node: "n1", RouterPort: 8080, RetryInterval: 10 * time.Millisecond, StatsInterval: statsInterval}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	e.s, err = New(cfg, Deps{Store: st, Loader: e.loader, Activator: e.acts, Stats: e.reports})
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

// settle waits until the Syncer has done all it will do with what the
// test wrote so far, and returns the loader's ports and VIPs then.
func (e *syncEnv) settle() (map[uint16]bool, map[netip.AddrPort]bpf.VIP) {
	synctest.Wait()
	return e.loader.state()
}

// advance moves the bubble's clock on by d, letting every tick due on the
// way run, and waits until the Syncer is idle again.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (e *syncEnv) vipRecord(fn string) (store.VIP, bool) {
	e.t.Helper()
	v, _, err := store.GetJSON[store.VIP](context.Background(), e.st, store.VIPKey(fn))
	if err != nil {
		return store.VIP{}, false
	}
	return v, true
}

func (e *syncEnv) setVIPCalls() int {
	e.loader.mu.Lock()
	defer e.loader.mu.Unlock()
	return e.loader.setVIPs
}

var (
	vip0 = netip.MustParseAddrPort("127.77.0.1:80")
	vip1 = netip.MustParseAddrPort("127.77.0.2:80")
)

// TestSyncer runs one Syncer through a sequence of steps, each building
// on the state the ones before left (a bubble allows no subtests).
func TestSyncer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSyncEnv(t)

		// Two functions: a warm one with two replicas on this node and one
		// on another, and a cold one. Port keys exist for this node and
		// another.
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

		steps := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"VIPs allocated once, lowest index first, by name", func(t *testing.T) {
				synctest.Wait()
				a, ok := e.vipRecord("alpha")
				require.True(t, ok, "alpha has a VIP")
				b, ok := e.vipRecord("beta")
				require.True(t, ok, "beta has a VIP")
				assert.Equal(t, store.VIP{Function: "alpha", Index: 0, Addr: "127.77.0.1:80"}, store.VIP{Function: a.Function, Index: a.Index, Addr: a.Addr})
				assert.Equal(t, store.VIP{Function: "beta", Index: 1, Addr: "127.77.0.2:80"}, store.VIP{Function: b.Function, Index: b.Index, Addr: b.Addr})
				slot, err := e.st.Get(context.Background(), store.VIPSlotKey(0))
				require.NoError(t, err)
				assert.JSONEq(t, `"alpha"`, string(slot.Value), "the index is claimed")
			}},
			{"router and this node's replica ports allow-listed", func(t *testing.T) {
				ports, _ := e.settle()
				assert.Equal(t, map[uint16]bool{8080: true, 9001: true, 9002: true, 9004: true}, ports)
				assert.Equal(t, map[uint16]bool{9001: true, 9002: true, 9004: true}, e.loader.trackedPorts(),
					"replica ports are tracked for request accounting, the router's is not")
			}},
			{"VIP load is reported for the replica's revision", func(t *testing.T) {
				synctest.Wait()
				require.Equal(t, "alpha-00001", e.s.replicaRevisions()[9002])
				// Two VIP requests in flight on r2 (port 9002); the pooled
				// port 9004 has no endpoint, so its load has no owner. No
				// time has passed yet: the first reading, one StatsInterval
				// after Run, is the baseline.
				e.loader.setLoad(9004, bpf.PortLoad{VIPRequests: 7, VIPOpen: 1})
				e.loader.setLoad(9002, bpf.PortLoad{VIPRequests: 2, VIPOpen: 2, VIPBusy: time.Second})
				advance(statsInterval)
				require.Empty(t, e.reports, "the first reading is only a baseline")

				// One more request arrives and the two open ones are busy
				// for half the interval each.
				e.loader.setLoad(9004, bpf.PortLoad{VIPRequests: 9, VIPOpen: 1})
				e.loader.setLoad(9002, bpf.PortLoad{VIPRequests: 3, VIPOpen: 2, VIPBusy: time.Second + statsInterval})
				advance(statsInterval)
				select {
				case stats := <-e.reports:
					require.Len(t, stats, 1)
					st := stats[0]
					assert.True(t, st.Time.Equal(time.Now()), "stamped at the reading, %v", st.Time)
					st.Time = time.Time{}
					assert.Equal(t, api.RevisionStat{
						Revision: "alpha-00001", Reporter: "vip@n1", Interval: api.Duration{Duration: statsInterval},
						AvgConcurrency: 1, MaxConcurrency: 2, Requests: 1,
					}, st)
				default:
					t.Fatal("no VIP load reported")
				}
				e.loader.setLoad(9002, bpf.PortLoad{})
				e.loader.setLoad(9004, bpf.PortLoad{})
			}},
			{"warm VIP has every ready replica, cold VIP none", func(t *testing.T) {
				_, vips := e.settle()
				require.Len(t, vips[vip0].Backends, 3, "alpha warm")
				assert.Equal(t, vip1, vips[vip1].Addr, "beta programmed")
				assert.Empty(t, vips[vip1].Backends, "beta cold")
				assert.Equal(t, uint32(1), vips[vip0].FunctionID)
				assert.Equal(t, uint32(2), vips[vip1].FunctionID)
				for _, b := range vips[vip0].Backends {
					assert.Equal(t, uint32(100*weightScale/3), b.Weight)
				}
				name, ok := e.s.FunctionByID(2)
				assert.True(t, ok)
				assert.Equal(t, "beta", name)
			}},
			{"a wake event activates the routed revision", func(t *testing.T) {
				e.loader.wakes <- bpf.WakeEvent{FunctionID: 2, VIP: vip1}
				synctest.Wait()
				select {
				case rev := <-e.acts.got:
					assert.Equal(t, "beta-00001", rev)
				default:
					t.Fatal("no activation")
				}
				e.loader.wakes <- bpf.WakeEvent{FunctionID: 99}
				synctest.Wait()
				assert.Equal(t, 1.0, counterValue(t, e.s.m.wakesUnknown), "an unknown function id is counted")
				e.acts.mu.Lock()
				assert.Equal(t, []string{"beta-00001"}, e.acts.revs, "and activates nothing")
				e.acts.mu.Unlock()
			}},
			{"traffic split weights the backends", func(t *testing.T) {
				e.putFunction("alpha", api.TrafficTarget{Revision: "alpha-00001", Percent: 75}, api.TrafficTarget{Revision: "alpha-00002", Percent: 25})
				e.txn(e.endpoint("alpha", "alpha-00002", "r9", "n1", 9009))
				_, vips := e.settle()
				ws := map[string]uint32{}
				for _, b := range vips[vip0].Backends {
					ws[b.Addr.String()] = b.Weight
				}
				assert.Equal(t, map[string]uint32{
					"127.0.0.1:9001": 25000, "127.0.0.1:9002": 25000, "127.0.0.1:9003": 25000, "127.0.0.1:9009": 25000,
				}, ws, "75/25 over 3+1 replicas")
			}},
			{"replica gone: port disallowed, backend removed", func(t *testing.T) {
				e.txn(store.Delete(store.EndpointKey("alpha-00001", "r1"), store.AnyVersion),
					store.Delete(store.PortKey("n1", 9001), store.AnyVersion))
				ports, vips := e.settle()
				assert.False(t, ports[9001], "r1's port disallowed")
				assert.True(t, ports[9002], "r2's port kept")
				assert.Len(t, vips[vip0].Backends, 3, "r1's backend removed")
				assert.False(t, e.loader.trackedPorts()[9001])
			}},
			{"unchanged state is not reprogrammed", func(t *testing.T) {
				before := e.setVIPCalls()
				// An unrelated write (another node's port) wakes the syncer.
				e.txn(store.Put(store.PortKey("n2", 9100), []byte(`"x"`), store.AnyVersion))
				e.txn(store.Put(store.PortKey("n1", 9100), []byte(`"x"`), store.AnyVersion))
				ports, _ := e.settle()
				require.True(t, ports[9100], "port 9100 allowed: the syncer ran")
				assert.Equal(t, before, e.setVIPCalls())
			}},
			{"deleted function: VIP unpublished and freed, index reused", func(t *testing.T) {
				e.txn(store.Delete(store.FunctionKey("alpha"), store.AnyVersion))
				_, vips := e.settle()
				assert.NotContains(t, vips, vip0, "alpha's VIP gone")
				_, ok := e.vipRecord("alpha")
				assert.False(t, ok, "alpha's VIP record freed")
				_, err := e.st.Get(context.Background(), store.VIPSlotKey(0))
				assert.ErrorIs(t, err, store.ErrNotFound, "the index is free again")

				e.putFunction("gamma")
				_, vips = e.settle()
				g, ok := e.vipRecord("gamma")
				require.True(t, ok, "gamma has a VIP")
				assert.Equal(t, uint32(0), g.Index, "the lowest free index")
				v, ok := vips[vip0]
				require.True(t, ok, "gamma programmed at alpha's old address")
				assert.Equal(t, uint32(1), v.FunctionID)
				assert.Empty(t, v.Backends, "gamma cold")
				name, _ := e.s.FunctionByID(1)
				assert.Equal(t, "gamma", name)
			}},
		}
		for _, s := range steps {
			t.Logf("step: %s", s.name)
			s.run(t)
		}
	})
}

// TestSyncersOnTwoNodesAgree runs two syncers on one store: they race for
// the same allocations, and every function still ends with one VIP, no two
// sharing an index. A syncer that loses a race sees the winner's write
// come back through its cache and tries again then, so the test asserts
// once both are idle, before any retry timer could fire.
func TestSyncersOnTwoNodesAgree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
		synctest.Wait()
		recs, _, err := store.ListJSON[store.VIP](ctx, st, store.PrefixVIPs)
		require.NoError(t, err)
		require.Len(t, recs, n, "every function has a VIP")
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
	})
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
	synctest.Test(t, func(t *testing.T) {
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
		// The caches' watches deliver the write, the Syncer programs the
		// loader and allocates the VIP, which comes back through the VIP
		// cache and is programmed: all done once the bubble is idle.
		synctest.Wait()
		got, vipsNow := loader.state()
		assert.Equal(t, map[uint16]bool{8080: true, 9001: true}, got, "this node's ports only")
		assert.Len(t, vipsNow, 1, "the function's VIP")
	})
}

// TestSyncerReplicaAddresses: with isolation, a replica serves on an
// address of its own in the replica CIDR (on the node bridge) rather than
// on 127.0.0.1. Its endpoint's address becomes the VIP backend as it is,
// and its port is still what is allow-listed, tracked and mapped to its
// revision for VIP load.
func TestSyncerReplicaAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSyncEnv(t, func(c *Config) { c.ReplicaCIDR = netip.MustParsePrefix("10.213.0.0/18") })
		e.putFunction("alpha")
		endpoint := func(replica, node, addr string) store.Op {
			return store.PutJSON(store.EndpointKey("alpha-00001", replica),
				store.Endpoint{Function: "alpha", Revision: "alpha-00001", Replica: replica, Node: node, Addr: addr}, store.AnyVersion)
		}
		e.txn(
			endpoint("r1", "n1", "10.213.0.2:20000"),
			endpoint("r2", "n1", "10.213.0.7:20005"),
			endpoint("r3", "n2", "10.213.0.2:20000"), // another node's: the same address on its own bridge
			endpoint("r4", "n3", "10.214.0.9:20001"), // another node's, outside this node's range
			store.Put(store.PortKey("n1", 20000), []byte(`"r1"`), store.AnyVersion),
			store.Put(store.PortKey("n1", 20005), []byte(`"r2"`), store.AnyVersion),
		)
		ports, vips := e.settle()
		assert.Equal(t, map[uint16]bool{8080: true, 20000: true, 20005: true}, ports)
		assert.Equal(t, map[uint16]bool{20000: true, 20005: true}, e.loader.trackedPorts())
		var addrs []string
		for _, b := range vips[vip0].Backends {
			addrs = append(addrs, b.Addr.String())
		}
		// n2's replica address means r1 here, so it is left out; n3's is
		// outside this node's range and may be reachable.
		assert.Equal(t, []string{"10.213.0.2:20000", "10.213.0.7:20005", "10.214.0.9:20001"}, addrs)
		assert.Equal(t, map[uint16]string{20000: "alpha-00001", 20005: "alpha-00001"}, e.s.replicaRevisions())

		e.loader.setLoad(20005, bpf.PortLoad{VIPRequests: 1})
		advance(statsInterval)
		e.loader.setLoad(20005, bpf.PortLoad{VIPRequests: 4})
		advance(statsInterval)
		select {
		case stats := <-e.reports:
			require.Len(t, stats, 1)
			assert.Equal(t, "alpha-00001", stats[0].Revision)
			assert.Equal(t, 3.0, stats[0].Requests)
		default:
			t.Fatal("no VIP load reported")
		}
	})
}

// TestSyncerPublishedAddresses: with replicas published at the node's
// address (cross-node routing with isolation), this node's endpoints are
// VIP backends at their own bridge addresses, untranslated, and another
// node's stay at that node's published address.
func TestSyncerPublishedAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cidr := netip.MustParsePrefix("10.213.0.0/18")
		e := newSyncEnv(t, func(c *Config) {
			c.ReplicaCIDR = cidr
			c.PublishIP = netip.MustParseAddr("10.216.0.11")
			c.ReplicaAddr = func(port int) netip.Addr {
				if port < 20000 || port > 20099 {
					return netip.Addr{}
				}
				b := cidr.Addr().As4()
				b[3] = byte(2 + port - 20000)
				return netip.AddrFrom4(b)
			}
		})
		e.putFunction("alpha")
		endpoint := func(replica, node, addr string) store.Op {
			return store.PutJSON(store.EndpointKey("alpha-00001", replica),
				store.Endpoint{Function: "alpha", Revision: "alpha-00001", Replica: replica, Node: node, Addr: addr}, store.AnyVersion)
		}
		e.txn(
			endpoint("r1", "n1", "10.216.0.11:20005"),
			endpoint("r2", "n2", "10.216.0.12:20005"), // another node's published replica
			endpoint("r3", "n1", "10.216.0.11:30000"), // outside the replica ports: left as published
			store.Put(store.PortKey("n1", 20005), []byte(`"r1"`), store.AnyVersion),
		)
		_, vips := e.settle()
		var addrs []string
		for _, b := range vips[vip0].Backends {
			addrs = append(addrs, b.Addr.String())
		}
		assert.Equal(t, []string{"10.213.0.7:20005", "10.216.0.11:30000", "10.216.0.12:20005"}, addrs)
	})
}
