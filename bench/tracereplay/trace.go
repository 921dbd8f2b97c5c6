package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

// function is one row of an Azure Functions 2019 trace: invocations per
// minute, and the distribution of its execution times.
type function struct {
	Hash    string
	PerMin  []int
	runtime runtimeDist
}

// runtimeDist is an execution-time distribution given by percentiles, as the
// trace's *_run.csv lists them: the 0th, 1st, 25th, 50th, 75th, 99th and
// 100th percentiles in milliseconds.
type runtimeDist struct {
	q  []float64 // quantile levels, ascending
	ms []float64 // value at each level
}

// sample draws an execution time by inverting the piecewise-linear CDF
// through the percentiles.
func (d runtimeDist) sample(r *rand.Rand) time.Duration {
	u := r.Float64()
	i := 1
	for i < len(d.q)-1 && d.q[i] < u {
		i++
	}
	lo, hi := d.q[i-1], d.q[i]
	f := 0.0
	if hi > lo {
		f = (u - lo) / (hi - lo)
	}
	ms := d.ms[i-1] + f*(d.ms[i]-d.ms[i-1])
	return time.Duration(math.Max(ms, 1) * float64(time.Millisecond))
}

// loadTrace reads the invocation counts and the execution times of every
// function in the trace.
func loadTrace(invPath, runPath string) ([]function, error) {
	inv, err := readCSV(invPath)
	if err != nil {
		return nil, err
	}
	run, err := readCSV(runPath)
	if err != nil {
		return nil, err
	}
	if len(inv) < 2 || len(run) < 2 {
		return nil, errors.New("trace files have no rows")
	}
	runs := map[string]runtimeDist{}
	hdr := index(run[0])
	cols := []struct {
		name string
		q    float64
	}{
		{"percentile_Average_0", 0}, {"percentile_Average_1", 0.01}, {"percentile_Average_25", 0.25},
		{"percentile_Average_50", 0.5}, {"percentile_Average_75", 0.75}, {"percentile_Average_99", 0.99},
		{"percentile_Average_100", 1},
	}
	for _, c := range append(cols, struct {
		name string
		q    float64
	}{"HashFunction", 0}) {
		if _, ok := hdr[c.name]; !ok {
			return nil, fmt.Errorf("%s: no column %s", runPath, c.name)
		}
	}
	for n, row := range run[1:] {
		var d runtimeDist
		for _, c := range cols {
			v, err := strconv.ParseFloat(row[hdr[c.name]], 64)
			if err != nil {
				return nil, fmt.Errorf("%s row %d: %s: %w", runPath, n+2, c.name, err)
			}
			d.q = append(d.q, c.q)
			d.ms = append(d.ms, v)
		}
		// Percentiles come from averages over time, so they are not always
		// monotonic; sort the values so the inverse CDF is.
		slices.Sort(d.ms)
		runs[row[hdr["HashFunction"]]] = d
	}
	ihdr := index(inv[0])
	first, ok := ihdr["minute_1"]
	if !ok {
		// The original Azure release names minute columns "1".."1440".
		if first, ok = ihdr["1"]; !ok {
			return nil, fmt.Errorf("%s: no column for minute 1", invPath)
		}
	}
	if _, ok := ihdr["HashFunction"]; !ok {
		return nil, fmt.Errorf("%s: no column HashFunction", invPath)
	}
	var fns []function
	for n, row := range inv[1:] {
		fn := function{Hash: row[ihdr["HashFunction"]]}
		d, ok := runs[fn.Hash]
		if !ok {
			return nil, fmt.Errorf("%s: function %s has no execution times in %s", invPath, fn.Hash, runPath)
		}
		fn.runtime = d
		for _, cell := range row[first:] {
			c, err := strconv.Atoi(cell)
			if err != nil || c < 0 {
				return nil, fmt.Errorf("%s row %d: bad count %q", invPath, n+2, cell)
			}
			fn.PerMin = append(fn.PerMin, c)
		}
		fns = append(fns, fn)
	}
	return fns, nil
}

func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = false
	var rows [][]string
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		rows = append(rows, row)
	}
}

// index maps column names to positions.
func index(header []string) map[string]int {
	m := make(map[string]int, len(header))
	for i, h := range header {
		m[h] = i
	}
	return m
}

// request is one invocation: when it arrives and how long it runs, both
// from the start of the day.
type request struct {
	at, dur time.Duration
}

// requests spreads each minute's count uniformly over the minute (the
// arrival times of a Poisson process given its count) and draws every
// duration, with a generator seeded per function so that every policy sees
// the very same requests.
func (fn function) requests(seed uint64) []request {
	r := rand.New(rand.NewPCG(seed, hashSeed(fn.Hash)))
	var out []request
	for m, c := range fn.PerMin {
		start := len(out)
		for range c {
			at := time.Duration(m)*time.Minute + time.Duration(r.Float64()*float64(time.Minute))
			out = append(out, request{at: at})
		}
		slices.SortFunc(out[start:], func(a, b request) int { return int(a.at - b.at) })
	}
	for i := range out {
		out[i].dur = fn.runtime.sample(r)
	}
	return out
}

func hashSeed(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
