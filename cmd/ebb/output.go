package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// writeJSON prints v as indented JSON, the shape the API itself returns.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML prints v as YAML with the field names and order of its JSON,
// so -o yaml and -o json show the same document.
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out, err := jsonToYAML(b)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// jsonToYAML rewrites a JSON document as block-style YAML, keeping its
// key order (a yaml.Node keeps it; a map would sort it).
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("convert to yaml: %w", err)
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("convert to yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blockStyle clears the flow and quoting styles JSON's syntax gave the
// nodes; the encoder quotes a string only where YAML needs it.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// table writes aligned columns, kubectl style: two spaces between columns,
// no borders, so the output still splits on whitespace.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: newTabwriter(w)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-" // keep columns countable
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// age renders how long ago t was, in the largest unit that keeps two digits
// of precision: 45s, 12m, 5h, 3d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < 2*time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

// bytesIEC renders a byte count with binary units: 512B, 1.5Ki, 256Mi, 7.6Gi.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + []string{"Ki", "Mi", "Gi", "Ti", "Pi"}[exp]
}

// shortDigest keeps the algorithm and 12 hex digits, enough to tell images apart.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return algo + ":" + hex[:12]
}

// readyOf sums ready and desired replicas over the revisions a route
// reaches (a traffic percent or a tag). An unrouted revision still winding
// down after a deploy serves nobody, so its replicas are not the function's.
func readyOf(revs []api.RevisionStatus) string {
	ready, desired := 0, 0
	for _, r := range revs {
		if r.Percent == 0 && len(r.Tags) == 0 {
			continue
		}
		ready += r.Ready
		desired += r.Desired
	}
	return fmt.Sprintf("%d/%d", ready, desired)
}

// targetName is how a traffic target is shown: its revision, or @latest
// (with the revision it currently means, when known).
func targetName(t api.TrafficTarget, latest string) string {
	switch {
	case t.LatestRevision && t.Revision != "":
		return "@latest(" + t.Revision + ")"
	case t.LatestRevision && latest != "":
		return "@latest(" + latest + ")"
	case t.LatestRevision:
		return "@latest"
	}
	return t.Revision
}

// trafficSummary renders a split on one line without spaces: a=50%,b=50%.
func trafficSummary(fn api.Function) string {
	parts := make([]string, 0, len(fn.Traffic))
	for _, t := range fn.Traffic {
		parts = append(parts, fmt.Sprintf("%s=%d%%", targetName(t, fn.LatestRevision), t.Percent))
	}
	return strings.Join(parts, ",")
}

// envSummary renders env vars sorted by name.
func envSummary(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+env[k])
	}
	return strings.Join(parts, " ")
}

func orNone(n int, none string) string {
	if n == 0 {
		return none
	}
	return strconv.Itoa(n)
}

func newTabwriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0) }
