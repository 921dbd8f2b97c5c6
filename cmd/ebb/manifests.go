package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/manifest"
)

// fileFlags are the -f flags that apply, diff and delete share.
type fileFlags struct {
	files     []string
	recursive bool
	lenient   bool
}

func (o *fileFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest FILE, DIR (its .yaml, .yml and .json files) or - for standard input (repeatable)")
	f.BoolVarP(&o.recursive, "recursive", "R", false, "read the directories of -f and all below them")
	f.BoolVar(&o.lenient, "lenient", false, "warn about Knative fields ebb cannot honour instead of refusing them")
}

// manifestExts are the file names a directory's manifests end in.
var manifestExts = []string{".yaml", ".yml", ".json"}

// manifestFiles expands the -f arguments into the files to read, in a
// stable order: a file as given, a directory's manifests sorted by name
// (with recursive, those of its subdirectories too), "-" as itself. A
// directory that holds no manifest is an error, so a typo in a path does
// not apply nothing and succeed.
func manifestFiles(args []string, recursive bool) ([]string, error) {
	if len(args) == 0 {
		return nil, usagef("missing -f FILE|DIR|-")
	}
	var out []string
	stdin := false
	for _, arg := range args {
		if arg == "-" {
			if stdin {
				return nil, usagef("-f -: standard input can be read only once")
			}
			stdin = true
			out = append(out, arg)
			continue
		}
		st, err := os.Stat(arg)
		if err != nil {
			return nil, usagef("-f %s: %v", arg, unwrapPathError(err))
		}
		if !st.IsDir() {
			out = append(out, arg)
			continue
		}
		found, err := dirManifests(arg, recursive)
		if err != nil {
			return nil, usagef("-f %s: %v", arg, unwrapPathError(err))
		}
		if len(found) == 0 {
			hint := ""
			if !recursive {
				hint = " (--recursive reads its subdirectories)"
			}
			return nil, usagef("-f %s: the directory holds no %s file%s", arg, strings.Join(manifestExts, ", "), hint)
		}
		out = append(out, found...)
	}
	return out, nil
}

func dirManifests(dir string, recursive bool) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		for _, ext := range manifestExts {
			if strings.HasSuffix(d.Name(), ext) {
				found = append(found, path)
				break
			}
		}
		return nil
	})
	sort.Strings(found)
	return found, err
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadManifests reads and parses every file of -f. Objects that name no
// namespace get ns. A parse error names the file, document, line and
// field, and is a usage error: nothing was sent.
func (a *app) loadManifests(o fileFlags, ns string) ([]manifest.Object, error) {
	files, err := manifestFiles(o.files, o.recursive)
	if err != nil {
		return nil, err
	}
	var objs []manifest.Object
	for _, file := range files {
		var r io.Reader
		name := file
		if file == "-" {
			r, name = a.stdin, "<stdin>"
		} else {
			f, err := os.Open(file)
			if err != nil {
				return nil, usagef("-f %s: %v", file, unwrapPathError(err))
			}
			defer f.Close()
			r = f
		}
		got, err := manifest.Parse(name, r, manifest.Options{Lenient: o.lenient, DefaultNamespace: ns})
		if err != nil {
			return nil, &usageError{err: err}
		}
		objs = append(objs, got...)
	}
	if len(objs) == 0 {
		return nil, usagef("-f %s: no objects to act on", strings.Join(o.files, ", "))
	}
	for _, obj := range objs {
		for _, w := range obj.Warnings {
			fmt.Fprintf(a.stderr, "Warning: %s: %s\n", where(obj), w)
		}
	}
	return objs, nil
}

// resolveSecrets fills the secret values from the files and environment
// the manifests name, here: the server never reads them.
func (a *app) resolveSecrets(objs []manifest.Object) error {
	getenv := func(k string) (string, bool) {
		v := a.getenv(k)
		return v, v != ""
	}
	if err := manifest.Resolve(objs, os.ReadFile, getenv); err != nil {
		return &usageError{err: err}
	}
	return nil
}

// where names a document for messages: hello.yaml: document 2.
func where(o manifest.Object) string {
	return fmt.Sprintf("%s: document %d", o.Source.File, o.Source.Doc+1)
}

// objectName is kind/name as apply prints it: function/hello; with the
// namespace when it is not the one the command acts in.
func objectName(kind, ns, name, inNS string) string {
	s := strings.ToLower(kind) + "/" + name
	if ns != "" && ns != inNS {
		s += " (namespace " + ns + ")"
	}
	return s
}

// normalized is an object as diff compares it: defaults applied and its
// image named as the control plane stores it, so that "hello" and
// "docker.io/library/hello:latest" are no change.
func normalized(o manifest.Object) manifest.Object {
	o = manifest.Normalize(o)
	if o.Function != nil {
		if img, err := ociimage.NormalizeName(o.Function.Image); err == nil {
			f := *o.Function
			f.Image = img
			o.Function = &f
		}
	}
	return o
}

// clientIn is the API client acting in namespace ns.
func clientIn(c *api.Client, ns string) *api.Client {
	if ns == "" {
		return c
	}
	return c.InNamespace(ns)
}
