package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes: it must not panic, and what it
// returns must render and parse back.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/golden", "testdata/knative"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(string(b))
			}
		}
	}
	f.Add(fnHead + "spec: {image: x, env: &a {A: b}, args: *a}\n")
	f.Add(jobHead + "spec: {image: x, completions: 5, parallelism: 2, activeDeadline: 1m}\n")
	f.Add("{\"apiVersion\": \"ebb.dev/v1\"}")
	f.Add("[1, 2]\n---\n- a\n...\n%YAML 1.2\n---\nx: *y\n")
	f.Fuzz(func(t *testing.T, src string) {
		for _, opts := range []Options{{}, {Lenient: true, DefaultNamespace: "default"}, {Resolved: true}} {
			objs, _ := Parse("fuzz.yaml", strings.NewReader(src), opts)
			if len(objs) == 0 {
				continue
			}
			out, err := Render(objs, "yaml")
			if err != nil {
				t.Fatalf("render of parsed objects: %v", err)
			}
			back, err := Parse("again.yaml", strings.NewReader(string(out)), Options{Resolved: opts.Resolved})
			if err != nil {
				t.Fatalf("parse of rendered objects: %v\n%s", err, out)
			}
			if len(back) != len(objs) {
				t.Fatalf("%d objects became %d", len(objs), len(back))
			}
		}
	})
}
