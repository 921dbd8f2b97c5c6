package manifest

import (
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// The spec types are decoded by reflection over their JSON tags, so that
// every api.FunctionSpec field is accepted under its JSON name, a new field
// needs no code here, and an unknown field is an error naming its path and
// line (which decoding JSON or yaml.v3 into structs would not give).

var (
	durationType = reflect.TypeFor[api.Duration]()
	fnSpecType   = reflect.TypeFor[FunctionSpec]()
	secretType   = reflect.TypeFor[api.Secret]()
	trafficType  = reflect.TypeFor[api.TrafficTarget]()
)

// refused are JSON fields of the spec types a manifest must not set, with
// the reason; Render leaves them out too.
var refused = map[reflect.Type]map[string]string{
	fnSpecType:  {"labels": "labels are metadata: set metadata.labels"},
	secretType:  {"value": "inline secret values are not accepted: refer to a Secret object (secret, key)", "name": "refer to a Secret object with secret and key"},
	trafficType: {"url": "is output only"},
}

// field is one JSON field of a struct, embedded structs flattened.
type field struct {
	name  string
	index []int
}

// fieldsOf lists a struct's JSON fields in declaration order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				out = append(out, field{name: sub.name, index: append([]int{i}, sub.index...)})
			}
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, field{name: name, index: []int{i}})
	}
	return out
}

// decode decodes n into the value v points to.
func (d *docParser) decode(n *yaml.Node, path string, v any) {
	d.decodeValue(n, path, reflect.ValueOf(v).Elem())
}

func (d *docParser) decodeValue(n *yaml.Node, path string, v reflect.Value) {
	if n = d.deref(n); n == nil || isNull(n) {
		return
	}
	t := v.Type()
	if t == durationType {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.fail(n, path, "%q is not a duration such as 30s or 1m30s", truncate(s))
			return
		}
		if dur < 0 {
			d.fail(n, path, "%s must not be negative", s)
			return
		}
		v.Set(reflect.ValueOf(api.D(dur)))
		return
	}
	switch t.Kind() {
	case reflect.String:
		if s, ok := d.str(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if b, ok := d.boolean(n, path); ok {
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Tag == "!!str" {
			d.fail(n, path, "must be an integer, not %s", describe(n))
			return
		}
		if i, ok := d.integer(n, path); ok {
			v.SetInt(int64(i))
		}
	case reflect.Float64, reflect.Float32:
		if n.Tag == "!!str" {
			d.fail(n, path, "must be a number, not %s", describe(n))
			return
		}
		if f, ok := d.number(n, path); ok {
			v.SetFloat(f)
		}
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decodeValue(n, path, p.Elem())
		v.Set(p)
	case reflect.Slice:
		items, ok := d.sequence(n, path)
		if !ok {
			return
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			d.decodeValue(item, index(path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.fail(n, path, "cannot be decoded (a map with %s keys)", t.Key())
			return
		}
		pairs, ok := d.mapping(n, path)
		if !ok {
			return
		}
		m := reflect.MakeMapWithSize(t, len(pairs))
		for _, kv := range pairs {
			e := reflect.New(t.Elem()).Elem()
			d.decodeValue(kv.v, join(path, kv.key), e)
			m.SetMapIndex(reflect.ValueOf(kv.key).Convert(t.Key()), e)
		}
		v.Set(m)
	case reflect.Struct:
		pairs, ok := d.mapping(n, path)
		if !ok {
			return
		}
		fields := map[string]field{}
		for _, f := range fieldsOf(t) {
			fields[f.name] = f
		}
		for _, kv := range pairs {
			fp := join(path, kv.key)
			if why, bad := refused[t][kv.key]; bad {
				d.fail(kv.kNode, fp, "%s", why)
				continue
			}
			f, ok := fields[kv.key]
			if !ok {
				d.fail(kv.kNode, fp, "unknown field")
				continue
			}
			d.decodeValue(kv.v, fp, v.FieldByIndex(f.index))
		}
	default:
		d.fail(n, path, "cannot be decoded (%s)", t)
	}
}

// reflectOf is the settable value p points to.
func reflectOf(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
