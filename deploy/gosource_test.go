package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the module root: the directory above deploy/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "deploy/ must sit directly under the module root")
	return root
}

// sourceFile is one parsed non-test Go file of the repository.
type sourceFile struct {
	path string // relative to the repository root, slash-separated
	file *ast.File
}

var (
	sourcesOnce sync.Once
	sources     []sourceFile
	sourcesErr  error
)

// goSources parses every non-test .go file of the repository once, skipping
// what the go tool skips (directories starting with "." or "_", testdata,
// vendor).
func goSources(t testing.TB) []sourceFile {
	t.Helper()
	root := repoRoot(t)
	sourcesOnce.Do(func() {
		fset := token.NewFileSet()
		sourcesErr = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			sources = append(sources, sourceFile{path: filepath.ToSlash(rel), file: f})
			return nil
		})
	})
	require.NoError(t, sourcesErr)
	require.NotEmpty(t, sources)
	return sources
}

// metricDef is what the Go sources say about one metric name.
type metricDef struct {
	// labels is the union of the label names of every definition.
	labels map[string]bool
	// labelsKnown is false when some definition's labels could not be read
	// statically (then any label passes).
	labelsKnown bool
	// histogram: the name also exists with _bucket (plus le), _sum, _count.
	histogram bool
	// at is where it is defined, for messages.
	at []string
}

var metricNameRE = regexp.MustCompile(`^ebb_[a-z0-9_]+$`)

// goMetrics returns every ebb_* metric the Go sources define, with labels
// where they can be read: prometheus.NewDesc and the New*Vec constructors
// with Name, or Namespace+Subsystem+Name, given as literals, and labels
// given as a []string literal, a variable holding one, or append() onto
// one. Any other "ebb_..." string literal counts as a metric with unknown
// labels.
func goMetrics(t testing.TB) map[string]*metricDef {
	t.Helper()
	defs := map[string]*metricDef{}
	add := func(name string, labels []string, known, histogram bool, at string) {
		d := defs[name]
		if d == nil {
			d = &metricDef{labels: map[string]bool{}, labelsKnown: true}
			defs[name] = d
		}
		for _, l := range labels {
			d.labels[l] = true
		}
		d.labelsKnown = d.labelsKnown && known
		d.histogram = d.histogram || histogram
		d.at = append(d.at, at)
	}
	for _, sf := range goSources(t) {
		claimed := map[*ast.BasicLit]bool{}
		// Constructors first, so their name literals are not also counted
		// as label-less mentions below.
		ast.Inspect(sf.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			scope := enclosingScope(sf.file, call)
			switch fn := sel.Sel.Name; fn {
			case "NewDesc":
				if len(call.Args) < 3 {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					return true
				}
				name, err := strconv.Unquote(lit.Value)
				if err != nil || !metricNameRE.MatchString(name) {
					return true
				}
				labels, known := resolveStrings(call.Args[2], scope, sf.file)
				claimed[lit] = true
				add(name, labels, known, false, sf.path)
			case "NewCounterVec", "NewGaugeVec", "NewHistogramVec", "NewSummaryVec",
				"NewCounter", "NewGauge", "NewHistogram", "NewSummary", "NewCounterFunc", "NewGaugeFunc":
				if len(call.Args) == 0 {
					return true
				}
				name, lits := optsName(call.Args[0])
				if !metricNameRE.MatchString(name) {
					return true
				}
				for _, l := range lits {
					claimed[l] = true
				}
				var labels []string
				known := true
				if strings.HasSuffix(fn, "Vec") && len(call.Args) > 1 {
					labels, known = resolveStrings(call.Args[1], scope, sf.file)
				}
				add(name, labels, known, strings.Contains(fn, "Histogram") || strings.Contains(fn, "Summary"), sf.path)
			}
			return true
		})
		ast.Inspect(sf.file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || claimed[lit] {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && metricNameRE.MatchString(s) {
				add(s, nil, false, false, sf.path)
			}
			return true
		})
	}
	return defs
}

// optsName reads the metric name of a prometheus.*Opts literal (or a
// pointer to one), joining Namespace, Subsystem and Name as client_golang
// does. It returns "" when they are not all literals.
func optsName(e ast.Expr) (string, []*ast.BasicLit) {
	if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
		e = u.X
	}
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return "", nil
	}
	parts := map[string]string{}
	var lits []*ast.BasicLit
	for _, elt := range cl.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, ok := kv.Key.(*ast.Ident)
		if !ok || (key.Name != "Namespace" && key.Name != "Subsystem" && key.Name != "Name") {
			continue
		}
		lit, ok := kv.Value.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", nil
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return "", nil
		}
		parts[key.Name] = s
		lits = append(lits, lit)
	}
	var name []string
	for _, k := range []string{"Namespace", "Subsystem", "Name"} {
		if parts[k] != "" {
			name = append(name, parts[k])
		}
	}
	return strings.Join(name, "_"), lits
}

// enclosingScope is the body of the function declaring n, or nil at
// package level.
func enclosingScope(f *ast.File, n ast.Node) *ast.BlockStmt {
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if ok && fd.Body != nil && fd.Pos() <= n.Pos() && n.End() <= fd.End() {
			return fd.Body
		}
	}
	return nil
}

// resolveStrings evaluates a []string expression statically: a literal, an
// identifier assigned one in scope (or at package level), append() onto
// one, or nil. known is false for anything else.
func resolveStrings(e ast.Expr, scope *ast.BlockStmt, f *ast.File) (vals []string, known bool) {
	switch e := e.(type) {
	case *ast.CompositeLit:
		return stringLits(e.Elts)
	case *ast.Ident:
		if e.Name == "nil" {
			return nil, true
		}
		if def := findAssignment(e.Name, scope, f); def != nil {
			return resolveStrings(def, scope, f)
		}
		return nil, false
	case *ast.CallExpr:
		fn, ok := e.Fun.(*ast.Ident)
		if !ok || fn.Name != "append" || len(e.Args) == 0 || e.Ellipsis.IsValid() {
			return nil, false
		}
		vals, known = resolveStrings(e.Args[0], scope, f)
		if !known {
			return nil, false
		}
		more, known := stringLits(e.Args[1:])
		if !known {
			return nil, false
		}
		return append(vals, more...), true
	}
	return nil, false
}

// stringLits unquotes exprs when every one is a string literal.
func stringLits(exprs []ast.Expr) ([]string, bool) {
	var vals []string
	for _, e := range exprs {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return nil, false
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return nil, false
		}
		vals = append(vals, s)
	}
	return vals, true
}

// findAssignment returns the value last given to name by a := or var in
// scope, else by a package-level var.
func findAssignment(name string, scope *ast.BlockStmt, f *ast.File) ast.Expr {
	var found ast.Expr
	visit := func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range n.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && id.Name == name && len(n.Rhs) == len(n.Lhs) {
					found = n.Rhs[i]
				}
			}
		case *ast.ValueSpec:
			for i, id := range n.Names {
				if id.Name == name && i < len(n.Values) {
					found = n.Values[i]
				}
			}
		}
		return true
	}
	if scope != nil {
		ast.Inspect(scope, visit)
		if found != nil {
			return found
		}
	}
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.VAR {
			ast.Inspect(gd, visit)
		}
	}
	return found
}

// ebbdConfig is what cmd/ebbd accepts: the YAML keys of its Config struct
// and its flag names.
type ebbdConfig struct {
	yamlKeys []string
	flags    map[string]bool
}

// readEbbdConfig reads the yaml tags of cmd/ebbd's Config struct and the
// names of the flags it defines on its FlagSet.
func readEbbdConfig(t testing.TB) ebbdConfig {
	t.Helper()
	cfg := ebbdConfig{flags: map[string]bool{}}
	for _, sf := range goSources(t) {
		if !strings.HasPrefix(sf.path, "cmd/ebbd/") {
			continue
		}
		ast.Inspect(sf.file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeSpec:
				st, ok := n.Type.(*ast.StructType)
				if n.Name.Name != "Config" || !ok {
					return true
				}
				for _, field := range st.Fields.List {
					if field.Tag == nil {
						continue
					}
					tag, err := strconv.Unquote(field.Tag.Value)
					require.NoError(t, err)
					key, _, _ := strings.Cut(reflectTag(tag, "yaml"), ",")
					if key != "" && key != "-" {
						cfg.yamlKeys = append(cfg.yamlKeys, key)
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				idx := -1
				switch sel.Sel.Name {
				case "String", "Bool", "Int", "Int64", "Uint", "Duration", "Float64":
					idx = 0
				case "StringVar", "BoolVar", "IntVar", "Int64Var", "UintVar", "DurationVar", "Float64Var":
					idx = 1
				}
				if idx < 0 || len(n.Args) <= idx {
					return true
				}
				if lit, ok := n.Args[idx].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						cfg.flags[s] = true
					}
				}
			}
			return true
		})
	}
	require.NotEmpty(t, cfg.yamlKeys, "no yaml-tagged Config struct found in cmd/ebbd")
	require.NotEmpty(t, cfg.flags, "no flags found in cmd/ebbd")
	sort.Strings(cfg.yamlKeys)
	return cfg
}

// reflectTag is reflect.StructTag.Get for a tag read from source.
func reflectTag(tag, key string) string {
	for tag != "" {
		tag = strings.TrimLeft(tag, " ")
		name, rest, ok := strings.Cut(tag, ":")
		if !ok || len(rest) == 0 || rest[0] != '"' {
			return ""
		}
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) {
			return ""
		}
		if name == key {
			v, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return ""
			}
			return v
		}
		tag = rest[end+1:]
	}
	return ""
}

// sourceImports reports whether any non-test Go file under dir (a
// slash-separated prefix such as "cmd/ebbd/") imports importPath.
func sourceImports(t testing.TB, dir, importPath string) bool {
	t.Helper()
	for _, sf := range goSources(t) {
		if !strings.HasPrefix(sf.path, dir) {
			continue
		}
		for _, imp := range sf.file.Imports {
			if p, err := strconv.Unquote(imp.Path.Value); err == nil && p == importPath {
				return true
			}
		}
	}
	return false
}

// sourceSetsField reports whether any non-test Go file under dir sets a
// struct field named field in a composite literal.
func sourceSetsField(t testing.TB, dir, field string) bool {
	t.Helper()
	found := false
	for _, sf := range goSources(t) {
		if !strings.HasPrefix(sf.path, dir) {
			continue
		}
		ast.Inspect(sf.file, func(n ast.Node) bool {
			if kv, ok := n.(*ast.KeyValueExpr); ok {
				if id, ok := kv.Key.(*ast.Ident); ok && id.Name == field {
					found = true
				}
			}
			return !found
		})
	}
	return found
}
