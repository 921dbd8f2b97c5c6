package backup

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storePrefixes parses store/records.go for every Prefix* string constant:
// the key layout a backup must classify.
func storePrefixes(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../store/records.go", nil, 0)
	require.NoError(t, err)
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, "Prefix") || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, err := strconv.Unquote(lit.Value)
				require.NoError(t, err)
				out[name.Name] = v
			}
		}
		return true
	})
	require.NotEmpty(t, out)
	return out
}

func TestEveryStorePrefixIsClassified(t *testing.T) {
	for name, prefix := range storePrefixes(t) {
		class, by := Classify(prefix + "x")
		assert.NotEqual(t, Unclassified, class,
			"store.%s (%q) is not in backup.Prefixes: say whether backups hold it (Kept) or the cluster rebuilds it (Runtime)", name, prefix)
		assert.Equal(t, prefix, by, "store.%s is classified by another prefix", name)
	}
}

func TestPrefixesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Prefixes {
		assert.False(t, seen[p.Prefix], "%s twice", p.Prefix)
		seen[p.Prefix] = true
		assert.NotEmpty(t, p.Why, p.Prefix)
		for _, q := range Prefixes {
			if p.Prefix != q.Prefix {
				assert.False(t, strings.HasPrefix(q.Prefix, p.Prefix), "%s shadows %s", p.Prefix, q.Prefix)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want Class
	}{
		{"functions/hello", Kept},
		{"secrets/default/db", Kept},
		{"tokens/abc", Kept},
		{"endpoints/hello-00001/r1", Runtime},
		{"nodes/n1", Runtime},
		{"leader", Unclassified},
		{"functionsx", Unclassified},
	} {
		got, _ := Classify(tc.key)
		assert.Equal(t, tc.want, got, tc.key)
	}
}
