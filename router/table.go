package router

import (
	"hash/maphash"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// routeSpec is what one host routes to, before it is bound to live state.
type routeSpec struct {
	Function string
	Targets  []targetSpec
	// Tags are the function's tagged revisions, by tag, which a request to
	// the function's own host may ask for by header (TagHeaders).
	Tags map[string]string
}

type targetSpec struct {
	Revision string
	Percent  int
}

// revSpec is what the data plane needs to know about a revision.
type revSpec struct {
	Function string
	Timeout  time.Duration
}

// plan computes the host table from the stored functions and revisions. It
// is pure: the same records always give the same plan. Targets naming a
// revision not (yet) known are left out; a function host wins over a tag
// host that spells the same name, and among tag hosts the first function
// in name order wins.
func plan(domain string, fns []store.Function, revs map[string]store.Revision) (map[string]routeSpec, map[string]revSpec) {
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	hosts := make(map[string]routeSpec, len(fns))
	used := make(map[string]revSpec)
	bind := func(rev string) bool {
		r, ok := revs[rev]
		if !ok {
			return false
		}
		timeout := r.Spec.Timeout.Duration
		if timeout <= 0 {
			timeout = api.DefaultTimeout
		}
		used[rev] = revSpec{Function: r.Function, Timeout: timeout}
		return true
	}
	tags := make(map[string]routeSpec)
	for _, fn := range fns {
		var main []targetSpec
		var byTag map[string]string
		for _, t := range store.ResolveTraffic(fn) {
			if t.Revision == "" || !bind(t.Revision) {
				continue
			}
			if t.Percent > 0 {
				main = append(main, targetSpec{Revision: t.Revision, Percent: t.Percent})
			}
			if t.Tag != "" {
				if byTag == nil {
					byTag = map[string]string{}
				}
				if _, taken := byTag[t.Tag]; !taken {
					byTag[t.Tag] = t.Revision
				}
				host := t.Tag + "-" + fn.Name + "." + domain
				if _, taken := tags[host]; !taken {
					tags[host] = routeSpec{Function: fn.Name, Targets: []targetSpec{{Revision: t.Revision, Percent: 100}}}
				}
			}
		}
		if len(main) == 0 && fn.LatestRevision != "" && len(fn.Traffic) == 0 && bind(fn.LatestRevision) {
			// No traffic block at all means everything goes to the latest.
			main = []targetSpec{{Revision: fn.LatestRevision, Percent: 100}}
		}
		if len(main) > 0 {
			hosts[fn.Name+"."+domain] = routeSpec{Function: fn.Name, Targets: main, Tags: byTag}
		}
	}
	for host, rs := range tags {
		if _, taken := hosts[host]; !taken {
			hosts[host] = rs
		}
	}
	return hosts, used
}

// table is an immutable snapshot of the routes, read without locks.
type table struct {
	hosts map[string]*route
	// functions holds each function's own route ({fn}.{domain}) by name,
	// for ServeFunction.
	functions map[string]*route
	revs      []*revState
}

type route struct {
	function string
	targets  []target
	total    uint32
	// tags are the function's tagged revisions by tag, on its own host.
	tags map[string]*revState
}

// TagHeaders name the request headers that pick a tagged revision on a
// function's own host, as Knative's tag-header-based routing does: ebb's
// own name, and Knative's, so its samples and clients work unchanged.
var TagHeaders = []string{"Ebb-Tag", "Knative-Serving-Tag"}

type target struct {
	cum uint32 // cumulative percent, exclusive upper bound
	rev *revState
}

var stickySeed = maphash.MakeSeed()

// pick chooses a revision by weight; with a key it hashes the key onto the
// split instead of rolling a die, so the same key keeps the same revision.
func (rt *route) pick(key []byte) *revState {
	if len(rt.targets) == 1 {
		return rt.targets[0].rev
	}
	var x uint32
	if key != nil {
		x = uint32(maphash.Bytes(stickySeed, key) % uint64(rt.total))
	} else {
		x = rand.Uint32N(rt.total)
	}
	for i := range rt.targets {
		if x < rt.targets[i].cum {
			return rt.targets[i].rev
		}
	}
	return rt.targets[len(rt.targets)-1].rev
}

// byName finds the target revision called name, for sticky cookies.
func (rt *route) byName(name []byte) *revState {
	for i := range rt.targets {
		if rt.targets[i].rev.name == string(name) {
			return rt.targets[i].rev
		}
	}
	return nil
}

// lookup finds the route for a Host header: the port and a trailing dot are
// ignored, and so is case.
func (t *table) lookup(host []byte) *route {
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ':' {
			host = host[:i]
			break
		}
		if host[i] < '0' || host[i] > '9' {
			break
		}
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if rt, ok := t.hosts[string(host)]; ok {
		return rt
	}
	upper := false
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper || len(host) > 253 {
		return nil
	}
	var buf [253]byte
	lower := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return t.hosts[string(lower)]
}
