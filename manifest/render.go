package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// Render writes objects as an ebb.dev/v1 stream, "yaml" (documents
// separated by ---) or "json" (one object, or an array of several, which
// Parse reads back). Field order is fixed (apiVersion, kind, metadata,
// spec; spec fields in api.FunctionSpec's order; map keys sorted) and zero
// values are left out, as absent and zero mean the same, so the output is
// stable to diff. A resolved secret value is written as value (base64), an
// unresolved one as fromFile or fromEnv. Warnings are not written.
func Render(objs []Object, format string) ([]byte, error) {
	nodes := make([]*yaml.Node, 0, len(objs))
	for i, o := range objs {
		n, err := objectNode(o)
		if err != nil {
			return nil, fmt.Errorf("object %d (%s %s): %w", i, o.Kind, o.Metadata.Name, err)
		}
		nodes = append(nodes, n)
	}
	switch format {
	case "yaml", "":
		var buf bytes.Buffer
		for i, n := range nodes {
			if i > 0 {
				buf.WriteString("---\n")
			}
			enc := yaml.NewEncoder(&buf)
			enc.SetIndent(2)
			if err := enc.Encode(n); err != nil {
				return nil, fmt.Errorf("render yaml: %w", err)
			}
			if err := enc.Close(); err != nil {
				return nil, fmt.Errorf("render yaml: %w", err)
			}
		}
		return buf.Bytes(), nil
	case "json":
		var raw bytes.Buffer
		if len(nodes) == 1 {
			writeJSON(&raw, nodes[0])
		} else {
			raw.WriteByte('[')
			for i, n := range nodes {
				if i > 0 {
					raw.WriteByte(',')
				}
				writeJSON(&raw, n)
			}
			raw.WriteByte(']')
		}
		var out bytes.Buffer
		if err := json.Indent(&out, raw.Bytes(), "", "  "); err != nil {
			return nil, fmt.Errorf("render json: %w", err)
		}
		out.WriteByte('\n')
		return out.Bytes(), nil
	}
	return nil, fmt.Errorf("unknown format %q: use yaml or json", format)
}

func objectNode(o Object) (*yaml.Node, error) {
	apiVersion := o.APIVersion
	if apiVersion == "" {
		apiVersion = APIVersion
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	addScalar(m, "apiVersion", apiVersion)
	addScalar(m, "kind", o.Kind)
	meta := &yaml.Node{Kind: yaml.MappingNode}
	addScalar(meta, "name", o.Metadata.Name)
	if o.Metadata.Namespace != "" {
		addScalar(meta, "namespace", o.Metadata.Namespace)
	}
	addNode(meta, "labels", encodeValue(reflect.ValueOf(o.Metadata.Labels)))
	addNode(meta, "annotations", encodeValue(reflect.ValueOf(o.Metadata.Annotations)))
	addNode(m, "metadata", meta)
	switch o.Kind {
	case KindFunction:
		if o.Function == nil {
			return nil, fmt.Errorf("a Function without a spec")
		}
		spec := encodeValue(reflect.ValueOf(*o.Function))
		if spec == nil {
			spec = &yaml.Node{Kind: yaml.MappingNode}
		}
		addNode(m, "spec", spec)
	case KindSecret:
		if o.Secret == nil {
			return nil, fmt.Errorf("a Secret without a spec")
		}
		data := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(o.Secret.Data) {
			v := o.Secret.Data[k]
			src := &yaml.Node{Kind: yaml.MappingNode}
			switch {
			case v.Value != nil:
				addScalar(src, "value", base64.StdEncoding.EncodeToString(v.Value))
			case v.FromFile != "":
				addScalar(src, "fromFile", v.FromFile)
			case v.FromEnv != "":
				addScalar(src, "fromEnv", v.FromEnv)
			default:
				return nil, fmt.Errorf("secret key %q has no source", k)
			}
			addNode(data, k, src)
		}
		spec := &yaml.Node{Kind: yaml.MappingNode}
		addNode(spec, "data", data)
		addNode(m, "spec", spec)
	case KindNamespace:
		if o.Namespace != nil {
			addNode(m, "spec", encodeValue(reflect.ValueOf(*o.Namespace)))
		}
	case KindCronTrigger:
		if o.CronTrigger == nil {
			return nil, fmt.Errorf("a CronTrigger without a spec")
		}
		addNode(m, "spec", encodeValue(reflect.ValueOf(*o.CronTrigger)))
	case KindJob:
		if o.Job == nil {
			return nil, fmt.Errorf("a Job without a spec")
		}
		addNode(m, "spec", encodeValue(reflect.ValueOf(*o.Job)))
	default:
		return nil, fmt.Errorf("unknown kind %q", o.Kind)
	}
	return m, nil
}

func addScalar(m *yaml.Node, key, value string) {
	addNode(m, key, strNode(value))
}

// addNode adds key: v to a mapping, unless v is nil (a zero value).
func addNode(m *yaml.Node, key string, v *yaml.Node) {
	if v == nil {
		return
	}
	m.Content = append(m.Content, strNode(key), v)
}

func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if yaml11Bool[s] {
		// yaml.v3 (YAML 1.2) would write yes plain, which YAML 1.1
		// readers (kubectl, PyYAML) take for a boolean.
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

var yaml11Bool = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
}

// encodeValue is decodeValue's inverse: a node for v, or nil for a zero
// value (an empty map, list or struct counts as zero). Fields a manifest
// refuses (refused) are left out.
func encodeValue(v reflect.Value) *yaml.Node {
	t := v.Type()
	if t == durationType {
		d := v.Interface().(api.Duration)
		if d.Duration == 0 {
			return nil
		}
		return strNode(d.String())
	}
	switch t.Kind() {
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return strNode(v.String())
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Int() == 0 {
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Float64, reflect.Float32:
		if v.Float() == 0 {
			return nil
		}
		return floatNode(v.Float())
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		n := encodeValue(v.Elem())
		if n == nil { // a pointer to zero is not absent (scale.initial: 0)
			switch v.Elem().Kind() {
			case reflect.Int, reflect.Int64, reflect.Int32:
				return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "0"}
			}
		}
		return n
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			item := encodeValue(v.Index(i))
			if item == nil {
				item = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
				if v.Index(i).Kind() != reflect.Struct {
					item = zeroScalar(v.Index(i))
				}
			}
			s.Content = append(s.Content, item)
		}
		return s
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sortStrings(keys)
		for _, k := range keys {
			e := encodeValue(v.MapIndex(reflect.ValueOf(k).Convert(t.Key())))
			if e == nil {
				e = zeroScalar(v.MapIndex(reflect.ValueOf(k).Convert(t.Key())))
			}
			m.Content = append(m.Content, strNode(k), e)
		}
		return m
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range fieldsOf(t) {
			if _, bad := refused[t][f.name]; bad {
				continue
			}
			addNode(m, f.name, encodeValue(v.FieldByIndex(f.index)))
		}
		if len(m.Content) == 0 {
			return nil
		}
		return m
	}
	return nil
}

// zeroScalar writes a zero value that must be kept (an empty env value, a
// list item): "" or 0.
func zeroScalar(v reflect.Value) *yaml.Node {
	switch v.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "0"}
	case reflect.Float64, reflect.Float32:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: "0"}
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"}
	case reflect.Map:
		return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	case reflect.Slice:
		return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "", Style: yaml.DoubleQuotedStyle}
}

func floatNode(f float64) *yaml.Node {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
		s = strconv.FormatInt(int64(f), 10)
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: s}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: s}
}

// writeJSON writes a node tree built by objectNode as compact JSON.
func writeJSON(buf *bytes.Buffer, n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(buf, n.Content[i])
			buf.WriteByte(':')
			writeJSON(buf, n.Content[i+1])
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(buf, c)
		}
		buf.WriteByte(']')
	default:
		switch n.Tag {
		case "!!int", "!!float", "!!bool":
			buf.WriteString(n.Value)
		default:
			b, _ := json.Marshal(n.Value)
			buf.Write(b)
		}
	}
}

// FromFunction exports a function as a manifest that applies back to the
// same state: the spec as stored (defaults included), its labels as
// metadata.labels, and the traffic split as set (output-only URLs left
// out).
func FromFunction(fn api.Function) Object {
	spec := fn.Spec
	labels := labelsOf(spec)
	spec = withLabels(spec, nil)
	var traffic []api.TrafficTarget
	if len(fn.Traffic) > 0 {
		traffic = make([]api.TrafficTarget, len(fn.Traffic))
		for i, t := range fn.Traffic {
			t.URL = ""
			if t.LatestRevision {
				// The status names the revision "latest" is now; the
				// manifest says "latest", whatever it will be.
				t.Revision = ""
			}
			traffic[i] = t
		}
	}
	return Object{
		APIVersion: APIVersion,
		Kind:       KindFunction,
		Metadata:   Metadata{Name: fn.Name, Namespace: fn.Namespace, Labels: copyMap(labels)},
		Function:   &FunctionSpec{FunctionSpec: copySpec(spec), Traffic: traffic},
	}
}

// FromNamespace is a namespace's manifest: its name and quota.
func FromNamespace(ns api.Namespace) Object {
	return Object{
		APIVersion: APIVersion,
		Kind:       KindNamespace,
		Metadata:   Metadata{Name: ns.Name},
		Namespace:  &NamespaceSpec{Quota: ns.Quota},
	}
}

// FromSecret is a secret's manifest. The API never gives a value back, so
// each key reads its value from an environment variable at apply time,
// SecretEnvVar(secret, key): set them to the values and the manifest
// applies back unchanged.
func FromSecret(s api.SecretInfo) Object {
	data := make(map[string]SecretValue, len(s.Keys))
	for _, k := range s.Keys {
		data[k] = SecretValue{FromEnv: SecretEnvVar(s.Name, k)}
	}
	return Object{
		APIVersion: APIVersion,
		Kind:       KindSecret,
		Metadata:   Metadata{Name: s.Name, Namespace: s.Namespace},
		Secret:     &SecretSpec{Data: data},
	}
}

// FromCronTrigger is a cron trigger's manifest: its spec, not its status.
func FromCronTrigger(tr api.CronTrigger) Object {
	spec := tr.CronTriggerSpec
	spec.Request.Header = spec.Request.Header.Clone()
	return Object{
		APIVersion:  APIVersion,
		Kind:        KindCronTrigger,
		Metadata:    Metadata{Name: tr.Name, Namespace: tr.Namespace},
		CronTrigger: &CronTriggerSpec{Function: tr.Function, CronTriggerSpec: spec},
	}
}

// FromJob is a job's manifest: its spec, not its status.
func FromJob(j api.Job) Object {
	return Object{
		APIVersion: APIVersion,
		Kind:       KindJob,
		Metadata:   Metadata{Name: j.Name, Namespace: j.Namespace},
		Job:        copyJobSpec(j.Spec),
	}
}

// copyJobSpec is a deep copy of s, so a manifest never aliases the
// caller's maps, slices and pointers.
func copyJobSpec(s api.JobSpec) *api.JobSpec {
	s.Args = slices.Clone(s.Args)
	s.Env = copyMap(s.Env)
	s.Secrets = slices.Clone(s.Secrets)
	if s.BackoffLimit != nil {
		v := *s.BackoffLimit
		s.BackoffLimit = &v
	}
	return &s
}

// SecretEnvVar is the variable an exported secret's key is read from:
// DB_PASSWORD for key "password" of secret "db" (upper case, every other
// character an underscore).
func SecretEnvVar(secret, key string) string {
	b := []byte(strings.ToUpper(secret + "_" + key))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// OwnsTraffic says whether a Function document decides its function's
// traffic: it does when it has a traffic section, or when it has neither
// traffic nor a rollout policy (its latest revision then gets 100%). A
// document with a rollout policy and no traffic leaves the traffic to its
// rollouts: applying it again mid-rollout must not undo a step.
func OwnsTraffic(fs FunctionSpec) bool {
	return len(fs.Traffic) > 0 || fs.Rollout == nil
}

// Normalize returns o in the form the server compares: a function's spec
// with every default applied and absent traffic as the latest revision's
// 100% (none at all when its rollouts own the traffic: OwnsTraffic), the
// default namespace filled in, empty maps as nil. Rendering two
// normalized objects gives equal text exactly when applying one over the
// other changes nothing.
func Normalize(o Object) Object {
	o.Warnings = nil
	o.Source = Source{}
	if o.APIVersion == "" {
		o.APIVersion = APIVersion
	}
	if o.Metadata.Namespace == "" && o.Kind != KindNamespace {
		o.Metadata.Namespace = api.DefaultNamespace
	}
	o.Metadata.Labels = copyMap(o.Metadata.Labels)
	o.Metadata.Annotations = copyMap(o.Metadata.Annotations)
	if o.Function != nil {
		fs := FunctionSpec{FunctionSpec: copySpec(o.Function.FunctionSpec).WithDefaults()}
		fs.FunctionSpec = withLabels(fs.FunctionSpec, nil)
		if len(fs.Env) == 0 {
			fs.Env = nil
		}
		switch {
		case !OwnsTraffic(*o.Function):
			fs.Traffic = nil
		case len(o.Function.Traffic) == 0:
			fs.Traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
		default:
			fs.Traffic = make([]api.TrafficTarget, len(o.Function.Traffic))
			for i, t := range o.Function.Traffic {
				t.URL = ""
				fs.Traffic[i] = t
			}
		}
		o.Function = &fs
	}
	if o.CronTrigger != nil {
		cs := CronTriggerSpec{Function: o.CronTrigger.Function, CronTriggerSpec: o.CronTrigger.CronTriggerSpec.WithDefaults()}
		cs.Request.Header = o.CronTrigger.Request.Header.Clone()
		if len(cs.Request.Header) == 0 {
			cs.Request.Header = nil
		}
		o.CronTrigger = &cs
	}
	if o.Job != nil {
		js := copyJobSpec(o.Job.WithDefaults())
		if len(js.Args) == 0 {
			js.Args = nil
		}
		if len(js.Secrets) == 0 {
			js.Secrets = nil
		}
		o.Job = js
	}
	if o.Secret != nil {
		s := &SecretSpec{Data: make(map[string]SecretValue, len(o.Secret.Data))}
		for k, v := range o.Secret.Data {
			v.line = 0
			s.Data[k] = v
		}
		o.Secret = s
	}
	if o.Namespace != nil {
		ns := *o.Namespace
		o.Namespace = &ns
	} else if o.Kind == KindNamespace {
		o.Namespace = &NamespaceSpec{}
	}
	return o
}

// copySpec copies the spec's maps, slices and pointers, so that an Object
// never aliases the api.Function it came from.
func copySpec(s api.FunctionSpec) api.FunctionSpec {
	s.Env = copyMap(s.Env)
	if s.Args != nil {
		s.Args = append([]string(nil), s.Args...)
	}
	if s.Secrets != nil {
		s.Secrets = append([]api.Secret(nil), s.Secrets...)
	}
	if s.Scale.Initial != nil {
		v := *s.Scale.Initial
		s.Scale.Initial = &v
	}
	return s
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func sortStrings(s []string) { slices.Sort(s) }
