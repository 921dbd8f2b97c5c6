package router

import (
	"hash/maphash"
	"math/rand/v2"
	"net/textproto"
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
	// Matches are the function's header matches, in traffic order, tried
	// on its own host before the split.
	Matches []matchSpec
}

// matchSpec sends requests whose headers all match to Revision.
type matchSpec struct {
	Revision string
	Headers  []headerSpec // by name
}

type headerSpec struct {
	Name, Value string
}

type targetSpec struct {
	Revision string
	Percent  int
}

// revSpec is what the data plane needs to know about a revision.
type revSpec struct {
	Function string
	Timeout  time.Duration
	// H2C: the revision's replicas speak HTTP/2 without TLS only.
	H2C bool
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
		used[rev] = revSpec{Function: r.Function, Timeout: timeout, H2C: r.Spec.SpeaksH2C()}
		return true
	}
	tags := make(map[string]routeSpec)
	for _, fn := range fns {
		var main []targetSpec
		var byTag map[string]string
		var matches []matchSpec
		for _, t := range store.ResolveTraffic(fn) {
			if t.Revision == "" || !bind(t.Revision) {
				continue
			}
			if t.Percent > 0 {
				main = append(main, targetSpec{Revision: t.Revision, Percent: t.Percent})
			}
			if len(t.Headers) > 0 {
				matches = append(matches, matchSpec{Revision: t.Revision, Headers: headerSpecs(t.Headers)})
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
			hosts[fn.Name+"."+domain] = routeSpec{Function: fn.Name, Targets: main, Tags: byTag, Matches: matches}
		}
	}
	for host, rs := range tags {
		if _, taken := hosts[host]; !taken {
			hosts[host] = rs
		}
	}
	return hosts, used
}

// headerSpecs lists a header match by name, in the canonical form the
// request header's Peek looks names up in, so that it need not rewrite them.
func headerSpecs(h map[string]string) []headerSpec {
	out := make([]headerSpec, 0, len(h))
	for name, value := range h {
		out = append(out, headerSpec{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// table is an immutable snapshot of the routes, read without locks.
type table struct {
	hosts map[string]*route
	// functions holds each function's own route ({fn}.{domain}) by name,
	// for ServeFunction.
	functions map[string]*route
	revs      []*revState
	// fnSnap and revSnap are the cache snapshots the table was built
	// from: newer ones mean a rebuild is due.
	fnSnap  *store.Snapshot[store.Function]
	revSnap *store.Snapshot[store.Revision]
	domSnap *store.Snapshot[store.Domain]
	// superseded is closed when the next table replaces this one.
	superseded chan struct{}
}

type route struct {
	function string
	targets  []target
	total    uint32
	// tags are the function's tagged revisions by tag, on its own host.
	tags map[string]*revState
	// matches are the function's header matches, in order, on its own host.
	matches []headerMatch
	// redirect: a domain mapping's host whose plain requests are
	// redirected to HTTPS.
	redirect bool
}

// headerMatch sends a request whose headers all match to rev.
type headerMatch struct {
	headers []matchHeader
	rev     *revState
}

// matchHeader is one header of a match; slot numbers its name among the
// route's distinct names, so that rules on one header (user: a, user: b,
// ...) read it once.
type matchHeader struct {
	name, value string
	slot        int
}

// matchSlots is how many distinct header names a route's matches read at
// most once per request; names past them are read at each use.
const matchSlots = 8

// newMatches binds a route's header matches to live state and numbers
// their names.
func newMatches(specs []matchSpec, states map[string]*revState) []headerMatch {
	if len(specs) == 0 {
		return nil
	}
	slots := map[string]int{}
	out := make([]headerMatch, 0, len(specs))
	for _, ms := range specs {
		hm := headerMatch{headers: make([]matchHeader, 0, len(ms.Headers)), rev: states[ms.Revision]}
		for _, hs := range ms.Headers {
			slot, ok := slots[hs.Name]
			if !ok {
				slot = len(slots)
				slots[hs.Name] = slot
			}
			hm.headers = append(hm.headers, matchHeader{name: hs.Name, value: hs.Value, slot: slot})
		}
		out = append(out, hm)
	}
	return out
}

// match finds the first header match the request meets. Peek reads the
// parsed header in place, its value stays valid through later Peeks (the
// names Peek would build a value for, Cookie and Trailer, cannot be
// matched), and the comparison converts no bytes: it allocates nothing.
func (rt *route) match(h requestHeader) *revState {
	if len(rt.matches) == 0 {
		return nil
	}
	var values [matchSlots][]byte
	var read uint8 // bit i: values[i] is read
next:
	for i := range rt.matches {
		m := &rt.matches[i]
		for j := range m.headers {
			mh := &m.headers[j]
			var v []byte
			if mh.slot < matchSlots {
				if read&(1<<mh.slot) == 0 {
					values[mh.slot] = h.Peek(mh.name)
					read |= 1 << mh.slot
				}
				v = values[mh.slot]
			} else {
				v = h.Peek(mh.name)
			}
			if string(v) != mh.value {
				continue next
			}
		}
		return m.rev
	}
	return nil
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
