package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/redis"
)

// watchCounter counts the watches a store is asked for, by prefix.
type watchCounter struct {
	store.Store
	mu      sync.Mutex
	watches map[string]int
}

func (w *watchCounter) Watch(ctx context.Context, prefix string, after int64) (<-chan store.WatchEvent, error) {
	w.mu.Lock()
	w.watches[prefix]++
	w.mu.Unlock()
	return w.Store.Watch(ctx, prefix, after)
}

func (w *watchCounter) counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.watches)
}

// followers counts, by prefix, the components following each cache the
// daemon opened.
func (c *caches) followers() map[string]int {
	out := map[string]int{}
	for _, cache := range []interface {
		Prefix() string
		Followers() int
	}{
		c.functions, c.revisions, c.endpoints, c.revStatus, c.nodes, c.assignments, c.scales, c.keepAlive, c.namespaces, c.vips, c.ports, c.rollouts, c.jobPods, c.domains,
	} {
		if !reflect.ValueOf(cache).IsNil() {
			out[cache.Prefix()] = cache.Followers()
		}
	}
	return out
}

// TestEachPrefixWatchedOnce starts each role in process over a store that
// counts watches. Once every component reading a prefix follows the
// daemon's cache of it, each prefix must have been watched exactly once:
// in the all role, endpoints/ has three readers (the replica registry,
// which the router and activator share, the autoscaler and, with eBPF,
// the eBPF sync) and one watch.
func TestEachPrefixWatchedOnce(t *testing.T) {
	const node = "n1"
	tests := []struct {
		role string
		// containerd says the role needs one (the API imports images, the
		// node agent runs replicas).
		containerd bool
		// followers are the components reading each prefix.
		followers map[string]int
		// withEBPF are the eBPF sync's, when the programs load here.
		withEBPF map[string]int
	}{
		{
			role: RoleRouter,
			followers: map[string]int{
				store.PrefixFunctions: 1, store.PrefixRevisions: 1, // router
				store.PrefixDomains:   1, // router
				store.PrefixEndpoints: 1, // replica registry
				store.PrefixRevStatus: 1, // activator
			},
		},
		{
			role:       RoleControlPlane,
			containerd: true,
			followers: map[string]int{ // the autoscaler's
				store.PrefixFunctions: 1, store.PrefixRevisions: 1, store.PrefixEndpoints: 1, store.PrefixNodes: 1,
				store.PrefixAssignments: 1, store.PrefixScales: 1, store.PrefixKeepAlive: 1, store.PrefixNamespaces: 1,
				store.PrefixRollouts: 0, // the rollout runner reads snapshots
				store.PrefixJobPods:  1,
			},
		},
		{
			role:       RoleNodeAgent,
			containerd: true,
			followers:  map[string]int{store.AssignmentsPrefix(node): 1, store.JobPodsPrefix(node): 1},
			withEBPF: map[string]int{
				store.PrefixFunctions: 1, store.PrefixEndpoints: 1, store.PrefixVIPs: 1, store.PrefixPorts + node + "/": 1,
			},
		},
		{
			role:       RoleAll,
			containerd: true,
			followers: map[string]int{
				store.PrefixFunctions: 2, store.PrefixRevisions: 2, // router, autoscaler
				store.PrefixEndpoints:   2,                                                  // replica registry, autoscaler
				store.PrefixRevStatus:   1,                                                  // activator
				store.PrefixAssignments: 2,                                                  // autoscaler, node agent
				store.PrefixNodes:       1, store.PrefixScales: 1, store.PrefixKeepAlive: 1, // autoscaler
				store.PrefixNamespaces: 1, // autoscaler
				store.PrefixDomains:    1, // router
				store.PrefixRollouts:   0, // the rollout runner reads snapshots
				store.PrefixJobPods:    2, // node agent, autoscaler
			},
			withEBPF: map[string]int{
				store.PrefixFunctions: 3, store.PrefixEndpoints: 3, store.PrefixVIPs: 1, store.PrefixPorts + node + "/": 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			dir := t.TempDir()
			cfg := defaultConfig()
			cfg.Role = tt.role
			cfg.DataDir = dir
			cfg.NodeName = node
			cfg.APIAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			cfg.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			// eBPF loads where the machine allows, with VIPs of its own
			// so as not to meet another ebbd's on this machine.
			cfg.VIPPrefix = fmt.Sprintf("127.78.%d.0/24", 1+rand.IntN(250))
			// Watches are what this counts; replica isolation would make
			// the node bridge (ebb0 by default) and leave it on the
			// machine, which a test must not.
			cfg.Isolation = isolationOff
			if tt.containerd {
				cfg.ContainerdAddress = testenv.Containerd(t)
			}
			var base store.Store
			if tt.role == RoleAll {
				emb, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
				require.NoError(t, err)
				base = emb
			} else {
				// The split roles share their state through Redis, and
				// report to a control plane that this test does not run.
				cfg.Store = testenv.Redis(t).URL()
				cfg.AutoscalerURL = "http://127.0.0.1:1"
				rs, err := redis.Open(context.Background(), cfg.Store, redis.Options{})
				require.NoError(t, err)
				base = rs
			}
			defer base.Close()
			require.NoError(t, cfg.Validate())
			st := &watchCounter{Store: base, watches: map[string]int{}}
			d := &daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), store: st, reg: prometheus.NewRegistry()}

			ctx, cancel := context.WithCancel(context.Background())
			g, gctx := errgroup.WithContext(ctx)
			err := d.start(gctx, g)
			defer func() {
				cancel()
				assert.NoError(t, g.Wait())
				d.close()
			}()
			require.NoError(t, err)

			// A split role registers its node credential for the calls
			// between roles and reads no admin token unless it serves the
			// API; the all role calls no other process.
			_, credErr := base.Get(ctx, store.NodeCredKey(cfg.NodeName, tt.role))
			_, tokenErr := os.Stat(filepath.Join(dir, "token"))
			if tt.role == RoleAll {
				assert.ErrorIs(t, credErr, store.ErrNotFound)
			} else {
				assert.NoError(t, credErr)
			}
			if tt.role == RoleAll || tt.role == RoleControlPlane {
				assert.NoError(t, tokenErr)
			} else {
				assert.ErrorIs(t, tokenErr, os.ErrNotExist)
			}

			followers := maps.Clone(tt.followers)
			if d.ebpf.loader != nil {
				maps.Copy(followers, tt.withEBPF)
			}
			want := map[string]int{}
			for prefix := range followers {
				want[prefix] = 1
			}
			// The components start following from their own goroutines,
			// some only after containerd has answered them, and the caches
			// open their watches from theirs. A component that read a
			// prefix through a cache of its own would never follow the
			// daemon's. The roles run against real containerd, Redis and
			// sockets, so this polls on the wall clock.
			var followed, watched map[string]int
			ok := assert.Eventually(t, func() bool {
				followed, watched = d.caches.followers(), st.counts()
				return maps.Equal(followed, followers) && maps.Equal(watched, want)
			}, 20*time.Second, 5*time.Millisecond)
			if !ok {
				assert.Equal(t, followers, followed, "followers by prefix")
				assert.Equal(t, want, watched, "watches by prefix")
			}
		})
	}
}
