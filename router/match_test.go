package router

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func TestPlanHeaderMatches(t *testing.T) {
	revs := map[string]store.Revision{
		"a-00001": {Name: "a-00001", Function: "a"},
		"a-00002": {Name: "a-00002", Function: "a"},
		"a-00003": {Name: "a-00003", Function: "a"},
	}
	fns := []store.Function{{Name: "a", LatestRevision: "a-00003", Traffic: []api.TrafficTarget{
		{Revision: "a-00001", Percent: 90},
		{Revision: "a-00002", Headers: map[string]string{"x-user": "tester", "X-ENV": "beta"}, Tag: "canary"},
		{LatestRevision: true, Percent: 10, Headers: map[string]string{"user": "admin"}},
		{Revision: "a-00009", Headers: map[string]string{"user": "ghost"}}, // unknown: left out
	}}}
	hosts, used := plan("example.com", fns, revs)
	assert.Equal(t, map[string]routeSpec{
		"a.example.com": {
			Function: "a",
			Targets:  []targetSpec{{"a-00001", 90}, {"a-00003", 10}},
			Tags:     map[string]string{"canary": "a-00002"},
			// In traffic order, each by canonical header name.
			Matches: []matchSpec{
				{Revision: "a-00002", Headers: []headerSpec{{"X-Env", "beta"}, {"X-User", "tester"}}},
				{Revision: "a-00003", Headers: []headerSpec{{"User", "admin"}}},
			},
		},
		// A tag host routes to its revision alone: no header matches.
		"canary-a.example.com": {Function: "a", Targets: []targetSpec{{"a-00002", 100}}},
	}, hosts)
	assert.Len(t, used, 3)
}

// request is a parsed request header as the server hands it over.
func request(t testing.TB, raw string) *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	require.NoError(t, h.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: fn.localhost\r\n"+raw+"\r\n"))))
	return &h
}

func TestRouteMatch(t *testing.T) {
	a, b, c := &revState{name: "a"}, &revState{name: "b"}, &revState{name: "c"}
	rt := &route{matches: newMatches([]matchSpec{
		{Revision: "a", Headers: []headerSpec{{"X-Env", "beta"}, {"X-User", "tester"}}},
		{Revision: "b", Headers: []headerSpec{{"X-User", "tester"}}},
		{Revision: "c", Headers: []headerSpec{{"Content-Type", "application/x-canary"}}},
	}, map[string]*revState{"a": a, "b": b, "c": c})}
	for _, tc := range []struct {
		name, raw string
		want      *revState
	}{
		{"all of the first match", "X-User: tester\r\nX-Env: beta\r\n", a},
		{"names ignore case", "x-user: tester\r\nX-ENV: beta\r\n", a},
		{"first in order wins; a partial match falls through", "X-User: tester\r\nX-Env: prod\r\n", b},
		{"second alone", "X-User: tester\r\n", b},
		{"values are exact", "X-User: Tester\r\n", nil},
		{"no prefix match", "X-User: tester2\r\n", nil},
		{"empty value", "X-User: \r\n", nil},
		{"the first of repeated headers counts", "X-User: other\r\nX-User: tester\r\n", nil},
		{"a header fasthttp keeps apart", "Content-Type: application/x-canary\r\n", c},
		{"no headers", "", nil},
	} {
		assert.Same(t, tc.want, rt.match(request(t, tc.raw)), tc.name)
	}
	assert.Nil(t, (&route{}).match(request(t, "X-User: tester\r\n")), "no matches")
}

// TestMatchAllocs holds header matching to the request path's budget of no
// allocation, for a request that matches the last of five rules and for one
// that matches none.
func TestMatchAllocs(t *testing.T) {
	rt := fiveRules()
	hit := request(t, "User-Agent: curl\r\nAccept: */*\r\nX-User: u4\r\n")
	miss := request(t, "User-Agent: curl\r\nAccept: */*\r\nX-User: nobody\r\n")
	require.Same(t, rt.matches[4].rev, rt.match(hit))
	require.Nil(t, rt.match(miss))
	assert.Zero(t, testing.AllocsPerRun(100, func() { rt.match(hit) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { rt.match(miss) }))
}

// fiveRules is a route with five single-header matches, X-User: u0 to u4.
func fiveRules() *route {
	rt := &route{targets: []target{{cum: 100, rev: &revState{name: "stable"}}}, total: 100}
	var specs []matchSpec
	states := map[string]*revState{}
	for i := range 5 {
		name := fmt.Sprintf("m%d", i)
		specs = append(specs, matchSpec{Revision: name, Headers: []headerSpec{{"X-User", fmt.Sprintf("u%d", i)}}})
		states[name] = &revState{name: name}
	}
	rt.matches = newMatches(specs, states)
	return rt
}

// TestMatchManyNames holds more distinct header names than matchSlots,
// which are read at each use instead of once.
func TestMatchManyNames(t *testing.T) {
	var specs []matchSpec
	var raw string
	for i := range matchSlots + 3 {
		hs := headerSpec{fmt.Sprintf("X-H%d", i), "v"}
		specs = append(specs, matchSpec{Revision: "partial", Headers: []headerSpec{hs, {"X-Never", "x"}}})
		raw += hs.Name + ": v\r\n"
	}
	all := matchSpec{Revision: "all"}
	for i := range matchSlots + 3 {
		all.Headers = append(all.Headers, headerSpec{fmt.Sprintf("X-H%d", i), "v"})
	}
	want := &revState{name: "all"}
	rt := &route{matches: newMatches(append(specs, all), map[string]*revState{"partial": {name: "partial"}, "all": want})}
	h := request(t, raw)
	assert.Same(t, want, rt.match(h))
	assert.Nil(t, rt.match(request(t, "X-H0: v\r\n")))
	assert.Zero(t, testing.AllocsPerRun(100, func() { rt.match(h) }))
}

// TestHeaderMatchRouting is the acceptance's header match on a live
// router: every matching request reaches B whatever the percents and the
// sticky cookie say, and no other request does.
func TestHeaderMatchRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{StickyCookie: "ebb-rev"}, Deps{})
		a, b, c := e.startMemBackend("a", nil), e.startMemBackend("b", nil), e.startMemBackend("c", nil)
		e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}, {name: "fn-00003"}}, []api.TrafficTarget{
			{Revision: "fn-00001", Percent: 50, Tag: "stable"},
			{Revision: "fn-00002", Percent: 0, Headers: map[string]string{"User": "tester"}},
			{Revision: "fn-00003", Percent: 50, Tag: "other"},
		})
		e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
		e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
		e.endpoint("fn", "fn-00003", "r3", c.addr, 0)
		e.waitRoute(host("fn"), 2)

		const n = 500
		matching := map[string]int{}
		others := map[string]int{}
		for i := range n {
			code, body, h := e.get(host("fn"), "/", map[string]string{"user": "tester", "Cookie": "ebb-rev=fn-00001"})
			require.Equal(t, 200, code)
			assert.Empty(t, h.Peek("Set-Cookie"), "a matched request is not pinned")
			matching[body]++
			for _, hdr := range []map[string]string{
				nil,
				{"User": "Tester"},
				{"User": "tester-2"},
				{"X-User": "tester"},
				{"User": fmt.Sprintf("user-%d", i)},
			} {
				code, body, _ := e.get(host("fn"), "/", hdr)
				require.Equal(t, 200, code)
				others[body]++
			}
		}
		assert.Equal(t, map[string]int{"b": n}, matching, "100% of matching requests reach B")
		assert.Zero(t, others["b"], "0% of the others do")
		assert.Equal(t, 5*n, others["a"]+others["c"])
		assert.Greater(t, others["a"], n, "the others still follow the split")
		assert.Greater(t, others["c"], n)

		// Tag hosts are unchanged, and a tag header beats a header match.
		for _, tc := range []struct {
			host   string
			header map[string]string
			want   string
		}{
			{"stable-fn.localhost", map[string]string{"User": "tester"}, "a"},
			{host("fn"), map[string]string{"User": "tester", "Ebb-Tag": "other"}, "c"},
			{host("fn"), map[string]string{"User": "tester", "Knative-Serving-Tag": "stable"}, "a"},
			{host("fn"), map[string]string{"User": "tester", "Ebb-Tag": "nope"}, "b"},
		} {
			_, body, _ := e.get(tc.host, "/", tc.header)
			assert.Equal(t, tc.want, body, "%s %v", tc.host, tc.header)
		}
	})
}
