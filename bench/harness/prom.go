package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Metrics is one scrape of a Prometheus text endpoint: every sample keyed
// by its name and sorted labels, as written ({a="1",b="2"}).
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text format. It keeps samples only;
// comments and blank lines are skipped, and a line it cannot read is an
// error, so a format change is noticed rather than read as zeros.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest, err := splitSample(line)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[key(name, labels)] = v
	}
	return m, sc.Err()
}

// splitSample splits `name{a="x",b="y"} 1` into its name, labels and the rest.
func splitSample(line string) (string, map[string]string, string, error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, "", fmt.Errorf("metrics line %q: no value", line)
	}
	name := line[:i]
	if line[i] == ' ' {
		return name, nil, line[i+1:], nil
	}
	labels := map[string]string{}
	s := line[i+1:]
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return name, labels, s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", nil, "", fmt.Errorf("metrics line %q: bad labels", line)
		}
		lname := s[:eq]
		s = s[eq+2:]
		var val strings.Builder
		j := 0
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return "", nil, "", fmt.Errorf("metrics line %q: unterminated label", line)
		}
		labels[lname] = val.String()
		s = s[j+1:]
	}
}

// key renders a sample key with sorted labels.
func key(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Get returns the sample name{labels...}, labels given as "k", "v" pairs.
//
// A series matches when it carries every label given, whatever others it
// has, and the values of all that match are summed: a label ebb adds to a
// metric later (namespace, say) must not turn a figure into zeros.
func (m Metrics) Get(name string, kv ...string) float64 {
	labels := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	if v, ok := m[key(name, labels)]; ok {
		return v
	}
	var sum float64
	for k, v := range m {
		if seriesHas(k, name, labels) {
			sum += v
		}
	}
	return sum
}

// seriesHas says whether the series keyed k (as key writes it) is of
// metric name and carries every one of labels.
func seriesHas(k, name string, labels map[string]string) bool {
	rest, ok := strings.CutPrefix(k, name+"{")
	if !ok {
		return false
	}
	inner := "," + strings.TrimSuffix(rest, "}") + ","
	for l, v := range labels {
		if !strings.Contains(inner, fmt.Sprintf(",%s=%q,", l, v)) {
			return false
		}
	}
	return true
}

// HistDelta is the change of one histogram's sum and count between two
// scrapes: with one event in between, Sum is that event's value.
type HistDelta struct {
	Sum   float64
	Count float64
}

// Hist returns the histogram delta of name{labels} from before to m.
func (m Metrics) Hist(before Metrics, name string, kv ...string) HistDelta {
	return HistDelta{
		Sum:   m.Get(name+"_sum", kv...) - before.Get(name+"_sum", kv...),
		Count: m.Get(name+"_count", kv...) - before.Get(name+"_count", kv...),
	}
}

// Mean is the mean of the events in the delta, in seconds; 0 if none.
func (h HistDelta) Mean() float64 {
	if h.Count <= 0 {
		return 0
	}
	return h.Sum / h.Count
}

// HistQuantile estimates the q-quantile (0 < q < 1) of the events that
// histogram name{labels} counted from before to m, from its buckets, the
// way Prometheus's histogram_quantile does: linear interpolation inside the
// bucket the rank falls in (from 0 for the first), and the highest finite
// bound when it falls in +Inf. ok is false when no event was counted.
func (m Metrics) HistQuantile(before Metrics, q float64, name string, kv ...string) (v float64, ok bool) {
	labels := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	// Cumulative counts by bound, summed over the matching series.
	cum := map[float64]float64{}
	for k, after := range m {
		if !seriesHas(k, name+"_bucket", labels) {
			continue
		}
		le, found := labelValue(k, "le")
		if !found {
			continue
		}
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		cum[bound] += after - before[k]
	}
	bounds := make([]float64, 0, len(cum))
	for b := range cum {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
		return 0, false
	}
	total := cum[bounds[len(bounds)-1]]
	if total <= 0 || q <= 0 || q >= 1 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bounds {
		c := cum[b]
		if c >= rank {
			if math.IsInf(b, 1) {
				return lower, true
			}
			if c == below {
				return b, true
			}
			return lower + (b-lower)*(rank-below)/(c-below), true
		}
		lower, below = b, c
	}
	return lower, true
}

// labelValue returns the value of label l in the series key k.
func labelValue(k, l string) (string, bool) {
	i := strings.Index(k, "{")
	if i < 0 {
		return "", false
	}
	inner := "," + strings.TrimSuffix(k[i+1:], "}")
	_, rest, ok := strings.Cut(inner, ","+l+`="`)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(rest, `"`)
	return v, ok
}

// Scrape fetches and parses url, sending token (when set) as a bearer
// token: /metrics on the API port needs one that may read metrics.
func Scrape(ctx context.Context, hc *http.Client, url, token string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}
