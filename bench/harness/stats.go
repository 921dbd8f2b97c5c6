package harness

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Dist summarises a sample of latencies, in milliseconds so the JSON reads
// the way the tables do.
type Dist struct {
	N     int     `json:"n"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	Min   float64 `json:"minMs"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
	Stdev float64 `json:"stdevMs"`
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summarize returns the distribution of ds (in any order). An empty sample
// gives a zero Dist with N 0.
func Summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = ms(d)
	}
	sort.Float64s(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var sq float64
	for _, x := range v {
		sq += (x - mean) * (x - mean)
	}
	return Dist{
		N: len(v), P50: Percentile(v, 50), P90: Percentile(v, 90), P99: Percentile(v, 99),
		Min: v[0], Max: v[len(v)-1], Mean: mean, Stdev: math.Sqrt(sq / float64(len(v))),
	}
}

// Percentile returns the p-th percentile of the sorted values by linear
// interpolation between closest ranks (the definition numpy uses by default),
// so p50 of an even sample is the mean of the middle two.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	if hi >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}

// Spread is a figure measured in several alternating runs: the median and
// the range. BENCHMARKS.md asks every figure to be quoted this way.
type Spread struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// SpreadOf returns the median and range of xs, keeping the runs in order.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return Spread{Median: Percentile(s, 50), Min: s[0], Max: s[len(s)-1], Runs: append([]float64(nil), xs...)}
}

// Format prints the spread as "median (min–max)" with the given verb.
func (s Spread) Format(verb string) string {
	if len(s.Runs) <= 1 || s.Min == s.Max {
		return fmt.Sprintf(verb, s.Median)
	}
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.Median, s.Min, s.Max)
}

// Ratios divides a by b pairwise (run i of a by run i of b), so each ratio
// compares runs taken next to each other; pairs with a zero divisor are
// skipped.
func Ratios(a, b []float64) []float64 {
	var out []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// Diffs subtracts b from a pairwise.
func Diffs(a, b []float64) []float64 {
	var out []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		out = append(out, a[i]-b[i])
	}
	return out
}
