package autoscaler

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current decider")

// traceEvent is one line of a recorded metric series: a stat, or an
// activation poke (stat is nil).
type traceEvent struct {
	at   time.Time
	stat *api.RevisionStat
}

type trace struct {
	spec   api.FunctionSpec
	end    time.Time
	events []traceEvent
}

func parseTrace(t *testing.T, path string) trace {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var tr trace
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if h, ok := strings.CutPrefix(text, "# "); ok {
			switch {
			case strings.HasPrefix(h, "spec: "):
				spec, err := api.DecodeSpec([]byte(strings.TrimPrefix(h, "spec: ")))
				require.NoError(t, err, "line %d", line)
				tr.spec = spec
			case strings.HasPrefix(h, "end: "):
				sec, err := strconv.ParseFloat(strings.TrimPrefix(h, "end: "), 64)
				require.NoError(t, err, "line %d", line)
				tr.end = at(sec)
			}
			continue
		}
		fields := strings.Fields(text)
		nums := make([]float64, 0, 6)
		for i, fld := range fields {
			if i == 1 {
				continue
			}
			v, err := strconv.ParseFloat(fld, 64)
			require.NoError(t, err, "line %d", line)
			nums = append(nums, v)
		}
		if len(fields) == 2 && fields[1] == "poke" {
			tr.events = append(tr.events, traceEvent{at: at(nums[0])})
			continue
		}
		require.Len(t, fields, 7, "line %d", line)
		st := api.RevisionStat{
			Revision: "fn-00001", Reporter: fields[1], Time: at(nums[0]),
			Interval:       api.D(time.Duration(nums[1] * float64(time.Second))),
			AvgConcurrency: nums[2], MaxConcurrency: nums[3], Requests: nums[4], Buffered: int(nums[5]),
		}
		tr.events = append(tr.events, traceEvent{at: st.Time, stat: &st})
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, tr.spec.Image, "%s has no spec header", path)
	sort.SliceStable(tr.events, func(i, j int) bool { return tr.events[i].at.Before(tr.events[j].at) })
	return tr
}

// replay feeds the series through Metrics and Decider the way the Runner
// does: stats as they arrive, a decision every 2 s and one at each poke. The
// replicas it decides become ready one second later (a cold start) and go
// away at once on scale-down.
func replay(tr trace) []string {
	const tick = 2 * time.Second
	const startLatency = time.Second
	stable, _ := Windows(tr.spec.Scale)
	m := NewMetrics(stable)
	d := NewDecider(tr.spec, Start{At: t0})
	type pending struct {
		at time.Time
		n  int
	}
	ready, desired := 0, 0
	var starting []pending
	var out []string
	decide := func(now time.Time, what string, poked bool) {
		keep := starting[:0]
		for _, p := range starting {
			if !p.at.After(now) {
				ready += p.n
			} else {
				keep = append(keep, p)
			}
		}
		starting = keep
		obs := m.Observe(now, tr.spec, ready)
		obs.Poked = poked
		dec := d.Decide(now, obs)
		out = append(out, fmt.Sprintf("%8.3f %-4s ready=%-3d stable=%7.2f panic=%7.2f buffered=%-3d -> desired=%-3d panic=%-5v reason=%s",
			now.Sub(t0).Seconds(), what, obs.Ready, obs.Stable, obs.Panic, obs.Buffered, dec.Desired, dec.Panic, dec.Reason))
		inFlight := ready
		for _, p := range starting {
			inFlight += p.n
		}
		switch {
		case dec.Desired > inFlight:
			starting = append(starting, pending{at: now.Add(startLatency), n: dec.Desired - inFlight})
		case dec.Desired < ready:
			ready = dec.Desired
			starting = nil
		}
		desired = dec.Desired
	}
	next := 0
	for now := t0; !now.After(tr.end); now = now.Add(tick) {
		for next < len(tr.events) && !tr.events[next].at.After(now) {
			ev := tr.events[next]
			if ev.stat == nil {
				decide(ev.at, "poke", true)
			} else {
				m.Record(*ev.stat)
			}
			next++
		}
		decide(now, "tick", false)
	}
	_ = desired
	return out
}

func TestGoldenTraces(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.stats")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".stats")
		t.Run(name, func(t *testing.T) {
			got := strings.Join(replay(parseTrace(t, path)), "\n") + "\n"
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./autoscaler -run TestGoldenTraces -update to create it")
			require.Equal(t, string(want), got, "decisions differ from %s; if the change is intended, rerun with -update and review the diff", golden)
		})
	}
}
