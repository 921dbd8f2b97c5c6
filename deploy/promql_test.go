package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// A promExpr is one PromQL expression from the deploy files, with the label
// names its output is expected to carry (legend templates, alert
// annotations).
type promExpr struct {
	where  string
	expr   string
	output []string
}

var (
	refRE      = regexp.MustCompile(`\bebb_[a-z0-9_]+\b`)
	selectorRE = regexp.MustCompile(`\b(ebb_[a-z0-9_]+)\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	legendRE   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	annotRE    = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	labelValRE = regexp.MustCompile(`label_values\(\s*(ebb_[a-z0-9_]+)[^,]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// resolveMetric maps a name used in PromQL to its definition: the name
// itself, or a histogram's _bucket, _sum or _count series (le is a label
// of _bucket only).
func resolveMetric(defs map[string]*metricDef, name string) (def *metricDef, extra []string, ok bool) {
	if d, ok := defs[name]; ok {
		return d, nil, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		if d, ok := defs[base]; ok && (d.histogram || !d.labelsKnown) {
			if suffix == "_bucket" {
				return d, []string{"le"}, true
			}
			return d, nil, true
		}
	}
	return nil, nil, false
}

// checkExpr returns what is wrong with pe against the Go sources: unknown
// ebb_* names, and label names that no metric of the expression carries.
// It is a lexical check, not a PromQL parser: a label used in a selector
// must belong to that selector's metric; a label used in grouping, in a
// legend or in an annotation must belong to some ebb_* metric of the
// expression (or be a target label).
func checkExpr(defs map[string]*metricDef, pe promExpr) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, pe.where+": "+fmt.Sprintf(format, args...))
	}
	union := map[string]bool{}
	anyLabel := false
	refs := refRE.FindAllString(pe.expr, -1)
	for _, name := range refs {
		def, extra, ok := resolveMetric(defs, name)
		if !ok {
			fail("metric %s is not defined in the Go sources", name)
			anyLabel = true // its labels are unknown: report the name only
			continue
		}
		if !def.labelsKnown {
			anyLabel = true
		}
		for l := range def.labels {
			union[l] = true
		}
		for _, l := range extra {
			union[l] = true
		}
	}
	for _, m := range selectorRE.FindAllStringSubmatch(pe.expr, -1) {
		def, extra, ok := resolveMetric(defs, m[1])
		if !ok || !def.labelsKnown {
			continue
		}
		for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			l := lm[1]
			if !def.labels[l] && !targetLabels[l] && !contains(extra, l) && l != "__name__" {
				fail("%s has no label %q (it has %s)", m[1], l, labelList(def, extra))
			}
		}
	}
	if len(refs) == 0 || anyLabel {
		return problems
	}
	check := func(l, how string) {
		if !union[l] && !targetLabels[l] {
			fail("%s label %q is on none of the expression's ebb_* metrics (%s)", how, l, strings.Join(refs, ", "))
		}
	}
	for _, m := range groupingRE.FindAllStringSubmatch(pe.expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				check(l, "grouping")
			}
		}
	}
	for _, l := range pe.output {
		check(l, "output")
	}
	return problems
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func labelList(def *metricDef, extra []string) string {
	var ls []string
	for l := range def.labels {
		ls = append(ls, l)
	}
	ls = append(ls, extra...)
	if len(ls) == 0 {
		return "no labels"
	}
	sort.Strings(ls)
	return strings.Join(ls, ", ")
}

// legendLabels returns the label names a Grafana legend template uses.
func legendLabels(legend string) []string {
	var out []string
	for _, m := range legendRE.FindAllStringSubmatch(legend, -1) {
		out = append(out, m[1])
	}
	return out
}

// annotationLabels returns the label names alert annotation templates use.
func annotationLabels(texts ...string) []string {
	var out []string
	for _, s := range texts {
		for _, m := range annotRE.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
	}
	return out
}
