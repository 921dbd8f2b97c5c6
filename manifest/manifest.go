package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// APIVersion is the apiVersion of ebb's own manifests.
const APIVersion = "ebb.dev/v1"

// Object is one manifest document.
type Object struct {
	APIVersion, Kind string
	Metadata         Metadata
	Function         *FunctionSpec
	Secret           *SecretSpec
	Namespace        *NamespaceSpec
	Source           Source
	Warnings         []string
}

// Metadata names an object.
type Metadata struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Source is where a document came from.
type Source struct {
	File      string
	Doc, Line int
}

// FunctionSpec is a Function's spec.
type FunctionSpec struct {
	api.FunctionSpec
	Traffic []api.TrafficTarget `json:"traffic,omitempty"`
}

// SecretSpec is a Secret's spec.
type SecretSpec struct {
	Data map[string]SecretValue `json:"data"`
}

// SecretValue is one key of a Secret.
type SecretValue struct {
	FromFile string `json:"fromFile,omitempty"`
	FromEnv  string `json:"fromEnv,omitempty"`
	Value    []byte `json:"value,omitempty"`
}

// NamespaceSpec is a Namespace's spec.
type NamespaceSpec struct {
	Quota api.Quota `json:"quota"`
}

// Options tune Parse.
type Options struct {
	Lenient          bool
	DefaultNamespace string
	Resolved         bool
}

// Error is a parse error.
type Error struct {
	File       string
	Doc, Line  int
	Field, Msg string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: document %d, line %d: ", e.File, e.Doc+1, e.Line)
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

type wire struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   Metadata        `json:"metadata"`
	Spec       json.RawMessage `json:"spec,omitempty"`
}

// Parse reads every document of r.
func Parse(file string, r io.Reader, opts Options) ([]Object, error) {
	dec := yaml.NewDecoder(r)
	var out []Object
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, &Error{File: file, Doc: doc, Msg: err.Error()}
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Msg: err.Error()}
		}
		if v == nil {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Msg: err.Error()}
		}
		var w wire
		if err := strict(b, &w); err != nil {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Msg: err.Error()}
		}
		o := Object{APIVersion: w.APIVersion, Kind: w.Kind, Metadata: w.Metadata, Source: Source{File: file, Doc: doc, Line: n.Line}}
		if w.APIVersion != APIVersion {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Field: "apiVersion", Msg: fmt.Sprintf("want %s", APIVersion)}
		}
		if o.Metadata.Name == "" {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Field: "metadata.name", Msg: "required"}
		}
		switch w.Kind {
		case "Function":
			o.Function = &FunctionSpec{}
			err = strict(w.Spec, o.Function)
		case "Secret":
			o.Secret = &SecretSpec{}
			err = strict(w.Spec, o.Secret)
		case "Namespace":
			o.Namespace = &NamespaceSpec{}
			if len(w.Spec) > 0 {
				err = strict(w.Spec, o.Namespace)
			}
		default:
			err = fmt.Errorf("unknown kind %q", w.Kind)
		}
		if err != nil {
			return nil, &Error{File: file, Doc: doc, Line: n.Line, Field: "spec", Msg: err.Error()}
		}
		if o.Metadata.Namespace == "" && w.Kind != "Namespace" {
			o.Metadata.Namespace = opts.DefaultNamespace
		}
		out = append(out, o)
	}
}

func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Resolve fills each SecretValue.Value.
func Resolve(objs []Object, readFile func(string) ([]byte, error), getenv func(string) (string, bool)) error {
	for _, o := range objs {
		if o.Secret == nil {
			continue
		}
		for k, v := range o.Secret.Data {
			switch {
			case v.FromFile != "":
				b, err := readFile(v.FromFile)
				if err != nil {
					return fmt.Errorf("secret %s key %s: %w", o.Metadata.Name, k, err)
				}
				v.Value = b
			case v.FromEnv != "":
				s, ok := getenv(v.FromEnv)
				if !ok {
					return fmt.Errorf("secret %s key %s: $%s is not set", o.Metadata.Name, k, v.FromEnv)
				}
				v.Value = []byte(s)
			}
			o.Secret.Data[k] = v
		}
	}
	return nil
}

// Render writes objs as a YAML or JSON stream.
func Render(objs []Object, format string) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		w := wire{APIVersion: APIVersion, Kind: o.Kind, Metadata: o.Metadata}
		var spec any
		switch {
		case o.Function != nil:
			spec = o.Function
		case o.Secret != nil:
			spec = o.Secret
		case o.Namespace != nil:
			spec = o.Namespace
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		w.Spec = b
		b, err = json.Marshal(w)
		if err != nil {
			return nil, err
		}
		if format == "json" {
			var out bytes.Buffer
			_ = json.Indent(&out, b, "", "  ")
			buf.Write(out.Bytes())
			buf.WriteByte('\n')
			continue
		}
		var v any
		_ = json.Unmarshal(b, &v)
		y, err := yaml.Marshal(v)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// FromFunction is the manifest of a stored function.
func FromFunction(fn api.Function) Object {
	tr := make([]api.TrafficTarget, len(fn.Traffic))
	for i, t := range fn.Traffic {
		t.URL = ""
		if t.LatestRevision {
			t.Revision = ""
		}
		tr[i] = t
	}
	spec := fn.Spec
	spec.Labels = nil
	return Object{APIVersion: APIVersion, Kind: "Function",
		Metadata: Metadata{Name: fn.Name, Namespace: fn.Namespace, Labels: fn.Spec.Labels},
		Function: &FunctionSpec{FunctionSpec: spec, Traffic: tr}}
}

// Normalize applies defaults.
func Normalize(o Object) Object {
	if o.Function != nil {
		f := *o.Function
		f.FunctionSpec = f.FunctionSpec.WithDefaults()
		if len(f.Traffic) == 0 {
			f.Traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
		}
		o.Function = &f
	}
	return o
}
