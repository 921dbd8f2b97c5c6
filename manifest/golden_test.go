package manifest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

// TestGolden parses each testdata/golden/*.yaml (and each of Knative's
// samples in testdata/knative) and compares what Render writes, with the
// warnings and errors, to its .golden file under testdata/golden. Files
// whose names contain "lenient" are parsed with Options.Lenient; those
// starting with json- are rendered as JSON.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.yaml")
	require.NoError(t, err)
	samples, err := filepath.Glob("testdata/knative/*.yaml")
	require.NoError(t, err)
	inputs = append(inputs, samples...)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		if strings.Contains(in, "knative/") {
			name = "sample-" + name
		}
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			require.NoError(t, err)
			got := golden(t, filepath.Base(in), string(src), strings.Contains(name, "lenient"), strings.HasPrefix(name, "json-"))
			path := filepath.Join("testdata", "golden", name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./manifest/ -run TestGolden -update")
			assert.Equal(t, string(want), got)
		})
	}
}

func golden(t *testing.T, file, src string, lenient, asJSON bool) string {
	objs, err := Parse(file, strings.NewReader(src), Options{Lenient: lenient})
	var b strings.Builder
	format := "yaml"
	if asJSON {
		format = "json"
	}
	if len(objs) > 0 {
		out, rerr := Render(objs, format)
		require.NoError(t, rerr)
		b.Write(out)
	}
	for _, o := range objs {
		for _, w := range o.Warnings {
			fmt.Fprintf(&b, "# warning: %s/%s: %s\n", strings.ToLower(o.Kind), o.Metadata.Name, w)
		}
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(&b, "# error: %s\n", line)
		}
	}
	return b.String()
}
