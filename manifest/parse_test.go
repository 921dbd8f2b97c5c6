package manifest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func parse(t *testing.T, src string, opts Options) ([]Object, error) {
	t.Helper()
	return Parse("test.yaml", strings.NewReader(src), opts)
}

func intp(i int) *int { return &i }

func TestParseEbbFunction(t *testing.T) {
	objs, err := parse(t, `
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: hello, namespace: team-a, labels: {app: shop, example.com/tier: web}, annotations: {note: x}}
spec:
  image: hello:latest
  port: 9090
  protocol: h2c
  env: {TARGET: world, EMPTY: ""}
  args: [--verbose]
  secrets: [{secret: db, key: password, env: DB_PASSWORD}]
  concurrency: {metric: rps, rpsTarget: 50, hardLimit: 10, targetUtilization: 0.5}
  scale: {min: 1, max: 5, initial: 0, scaleToZeroGrace: 45s, stableWindow: 2m}
  resources: {cpu: 0.5, memory: 128Mi, pids: 64}
  timeout: 30s
  traffic:
  - {latestRevision: true, percent: 90}
  - {revision: hello-00001, percent: 10, tag: stable}
`, Options{})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	o := objs[0]
	assert.Equal(t, APIVersion, o.APIVersion)
	assert.Equal(t, KindFunction, o.Kind)
	assert.Equal(t, Metadata{Name: "hello", Namespace: "team-a",
		Labels: map[string]string{"app": "shop", "example.com/tier": "web"}, Annotations: map[string]string{"note": "x"}}, o.Metadata)
	assert.Equal(t, Source{File: "test.yaml", Doc: 0, Line: 2}, o.Source)
	want := FunctionSpec{
		FunctionSpec: api.FunctionSpec{
			Image:       "hello:latest",
			Port:        9090,
			Protocol:    api.ProtocolH2C,
			Env:         map[string]string{"TARGET": "world", "EMPTY": ""},
			Args:        []string{"--verbose"},
			Secrets:     []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}},
			Concurrency: api.Concurrency{Metric: "rps", RPSTarget: 50, HardLimit: 10, TargetUtilization: 0.5},
			Scale:       api.Scale{Min: 1, Max: 5, Initial: intp(0), ScaleToZeroGrace: api.D(45 * time.Second), StableWindow: api.D(2 * time.Minute)},
			Resources:   api.Resources{CPU: 0.5, Memory: "128Mi", Pids: 64},
			Timeout:     api.D(30 * time.Second),
		},
		Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 90}, {Revision: "hello-00001", Percent: 10, Tag: "stable"}},
	}
	assert.Equal(t, &want, o.Function)
	assert.Nil(t, o.Secret)
	assert.Nil(t, o.Namespace)
	assert.Empty(t, o.Warnings)
}

func TestParseSecretAndNamespace(t *testing.T) {
	objs, err := parse(t, `
---
# a comment-only preamble is no document
apiVersion: ebb.dev/v1
kind: Secret
metadata: {name: db}
spec:
  data:
    password: {fromFile: secrets/pw}
    user: {fromEnv: DB_USER}
---
apiVersion: ebb.dev/v1
kind: Namespace
metadata: {name: team-a}
spec:
  quota: {functions: 10, memory: 4Gi, cpu: 2.5}
---
apiVersion: ebb.dev/v1
kind: Namespace
metadata: {name: team-b}
---
`, Options{DefaultNamespace: "team-a"})
	require.NoError(t, err)
	require.Len(t, objs, 3)
	assert.Equal(t, "team-a", objs[0].Metadata.Namespace, "the default namespace fills in")
	assert.Equal(t, "secrets/pw", objs[0].Secret.Data["password"].FromFile)
	assert.Equal(t, "DB_USER", objs[0].Secret.Data["user"].FromEnv)
	assert.Equal(t, 1, objs[1].Source.Doc)
	assert.Equal(t, 12, objs[1].Source.Line)
	assert.Equal(t, api.Quota{Functions: 10, Memory: "4Gi", CPU: 2.5}, objs[1].Namespace.Quota)
	assert.Empty(t, objs[1].Metadata.Namespace, "a Namespace is in no namespace")
	assert.Equal(t, &NamespaceSpec{}, objs[2].Namespace)
}

func TestParseJSON(t *testing.T) {
	one := "{\n\t\"apiVersion\": \"ebb.dev/v1\",\n\t\"kind\": \"Function\",\n\t\"metadata\": {\"name\": \"hello\"},\n\t\"spec\": {\"image\": \"hello:1\", \"scale\": {\"min\": 2}}\n}\n"
	objs, err := parse(t, one, Options{})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, 2, objs[0].Function.Scale.Min)

	objs, err = parse(t, "["+one+", "+strings.Replace(one, "hello", "bye", 1)+"]", Options{})
	require.NoError(t, err)
	require.Len(t, objs, 2)
	assert.Equal(t, "bye", objs[1].Metadata.Name)
	assert.Equal(t, 1, objs[1].Source.Doc)

	_, err = parse(t, `{"apiVersion": "ebb.dev/v1", "kind": "Function", "metadata": {"name": "x"}, "spec": {"image": "x", "bogus": 1}}`, Options{})
	requireError(t, err, 0, 1, "spec.bogus", "unknown field")
}

// requireError checks err is exactly one *Error with these coordinates.
func requireError(t *testing.T, err error, doc, line int, field, msg string) {
	t.Helper()
	require.Error(t, err)
	var e *Error
	require.True(t, errors.As(err, &e), "%T: %v", err, err)
	var es Errors
	require.False(t, errors.As(err, &es), "want one error, got: %v", err)
	assert.Equal(t, "test.yaml", e.File)
	assert.Equal(t, doc, e.Doc, "doc: %v", err)
	if line > 0 {
		assert.Equal(t, line, e.Line, "line: %v", err)
	}
	assert.Equal(t, field, e.Field, "field: %v", err)
	assert.Contains(t, e.Msg, msg)
}

const fnHead = "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: hello}\n"

func TestParseHostile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		line  int
		field string
		msg   string
	}{
		{"bad yaml", fnHead + "spec: {image: [}\n", 4, "", "invalid YAML: line 4"},
		{"bad indentation", fnHead + "spec:\n  image: x\n port: 1\n", 6, "", "invalid YAML"},
		{"tab indentation", fnHead + "spec:\n\timage: x\n", 5, "", "invalid YAML"},
		{"scalar document", "hello\n", 1, "", "must be a mapping, not the string \"hello\""},
		{"list document", "- a\n- b\n", 1, "", "must be a mapping, not a list"},
		{"no apiVersion", "kind: Function\nmetadata: {name: x}\n", 1, "apiVersion", "is required"},
		{"no kind", "apiVersion: ebb.dev/v1\nmetadata: {name: x}\n", 1, "kind", "is required"},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Deployment\n", 1, "apiVersion", `"apps/v1" is neither ebb.dev/v1 nor serving.knative.dev/v1`},
		{"wrong kind", "apiVersion: ebb.dev/v1\nkind: Pod\nmetadata: {name: x}\n", 1, "kind", `"Pod" is not one of Function, Secret, Namespace`},
		{"knative wrong kind", "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: x}\n", 2, "kind", "ebb maps only Service"},
		{"kind not a string", "apiVersion: ebb.dev/v1\nkind: [Function]\n", 2, "kind", "must be a string, not a list"},
		{"missing metadata", "apiVersion: ebb.dev/v1\nkind: Function\nspec: {image: x}\n", 1, "metadata.name", "is required"},
		{"missing name", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {namespace: a}\nspec: {image: x}\n", 3, "metadata.name", "is required"},
		{"bad name", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: Hello_World}\nspec: {image: x}\n", 3, "metadata.name", "must be a DNS label"},
		{"bad namespace", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, namespace: -x}\nspec: {image: x}\n", 3, "metadata.namespace", "must be a DNS label"},
		{"bad label", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, labels: {'a b': x}}\nspec: {image: x}\n", 3, `metadata.labels["a b"]`, "the key"},
		{"long label value", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, labels: {a: " + strings.Repeat("x", 64) + "}}\nspec: {image: x}\n", 3, "metadata.labels.a", "the value"},
		{"unknown metadata", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, uid: x}\nspec: {image: x}\n", 3, "metadata.uid", "unknown field"},
		{"unknown top field", fnHead + "spec: {image: x}\nstatus: {}\n", 5, "status", "unknown field"},
		{"unknown spec field", fnHead + "spec:\n  image: x\n  imagee: y\n", 6, "spec.imagee", "unknown field"},
		{"unknown nested field", fnHead + "spec:\n  image: x\n  scale: {minimum: 1}\n", 6, "spec.scale.minimum", "unknown field"},
		{"spec labels", fnHead + "spec:\n  image: x\n  labels: {a: b}\n", 6, "spec.labels", "metadata.labels"},
		{"traffic url", fnHead + "spec:\n  image: x\n  traffic: [{latestRevision: true, percent: 100, url: http://x}]\n", 6, "spec.traffic[0].url", "output only"},
		{"inline function secret", fnHead + "spec:\n  image: x\n  secrets: [{value: b}]\n", 6, "spec.secrets[0].value", "inline secret values"},
		{"missing spec", fnHead, 1, "spec", "is required"},
		{"missing image", fnHead + "spec: {port: 80}\n", 4, "spec.image", "is required"},
		{"spec not a mapping", fnHead + "spec: [image]\n", 4, "spec", "must be a mapping, not a list"},
		{"negative number", fnHead + "spec:\n  image: x\n  scale: {min: -1}\n", 6, "spec.scale.min", "must not be negative"},
		{"negative float", fnHead + "spec:\n  image: x\n  resources: {cpu: -0.5}\n", 6, "spec.resources.cpu", "must not be negative"},
		{"string for int", fnHead + "spec:\n  image: x\n  port: \"80\"\n", 6, "spec.port", "must be an integer"},
		{"float for int", fnHead + "spec:\n  image: x\n  port: 80.5\n", 6, "spec.port", "must be an integer"},
		{"huge int", fnHead + "spec:\n  image: x\n  port: 99999999999999999999\n", 6, "spec.port", "integer"},
		{"nan", fnHead + "spec:\n  image: x\n  resources: {cpu: .nan}\n", 6, "spec.resources.cpu", "not a finite number"},
		{"bool wrong", fnHead + "spec:\n  image: x\n  traffic: [{latestRevision: yes, percent: 100}]\n", 6, "spec.traffic[0].latestRevision", "true or false"},
		{"bad duration", fnHead + "spec:\n  image: x\n  timeout: 30\n", 6, "spec.timeout", "not a duration"},
		{"negative duration", fnHead + "spec:\n  image: x\n  timeout: -5s\n", 6, "spec.timeout", "must not be negative"},
		{"invalid spec", fnHead + "spec:\n  image: x\n  port: 70000\n", 5, "spec.port", "outside 1-65535"},
		{"invalid traffic", fnHead + "spec:\n  image: x\n  traffic: [{latestRevision: true, percent: 50}]\n", 5, "spec.traffic", "sum to 50"},
		{"duplicate key", fnHead + "spec:\n  image: x\n  image: y\n", 6, "spec.image", "is set twice"},
		{"merge key", fnHead + "spec:\n  <<: {image: x}\n", 5, "spec", "merge keys"},
		{"env not a map", fnHead + "spec:\n  image: x\n  env: [A=b]\n", 6, "spec.env", "must be a mapping"},
		{"secret inline value", "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    pw: {value: aGk=}\n", 6, "spec.data.pw.value", "do not belong in a manifest"},
		{"secret two sources", "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    pw: {fromFile: a, fromEnv: B}\n", 6, "spec.data.pw", "exactly one"},
		{"secret no data", "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec: {data: {}}\n", 4, "spec.data", "at least one key"},
		{"secret bad key", "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    'a/b': {fromEnv: B}\n", 6, `spec.data["a/b"]`, "must be 1-253"},
		{"namespace in namespace", "apiVersion: ebb.dev/v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", 1, "metadata.namespace", "not inside a namespace"},
		{"bad quota", "apiVersion: ebb.dev/v1\nkind: Namespace\nmetadata: {name: a}\nspec: {quota: {memory: lots}}\n", 4, "spec", "quota.memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			assert.Empty(t, objs)
			requireError(t, err, 0, tc.line, tc.field, tc.msg)
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := Parse("hello.yaml", strings.NewReader("apiVersion: ebb.dev/v1\nkind: Namespace\nmetadata: {name: a}\n---\n"+fnHead+"spec:\n  image: x\n  volumes: []\n"), Options{})
	require.EqualError(t, err, "hello.yaml: document 2, line 10: spec.volumes: unknown field")
}

// One bad document leaves the others' objects, and each error names its
// document.
func TestParseKeepsGoodDocuments(t *testing.T) {
	src := fnHead + "spec: {image: a}\n---\n" + fnHead + "spec: {image: [}\n---\n" + fnHead + "spec: {image: c, bogus: 1}\n---\n" + fnHead + "spec: {image: d}\n"
	objs, err := parse(t, src, Options{})
	require.Len(t, objs, 2)
	assert.Equal(t, "a", objs[0].Function.Image)
	assert.Equal(t, "d", objs[1].Function.Image)
	assert.Equal(t, 3, objs[1].Source.Doc)
	assert.Equal(t, 16, objs[1].Source.Line)
	var es Errors
	require.ErrorAs(t, err, &es)
	require.Len(t, es, 2)
	assert.Equal(t, 1, es[0].Doc)
	assert.Equal(t, 9, es[0].Line)
	assert.Equal(t, 2, es[1].Doc)
	assert.Equal(t, "spec.bogus", es[1].Field)
	assert.Equal(t, 14, es[1].Line)
}

func TestParseLimits(t *testing.T) {
	t.Run("huge document", func(t *testing.T) {
		src := fnHead + "spec:\n  image: x\n  env: {A: \"" + strings.Repeat("x", MaxDocumentBytes) + "\"}\n---\n" + fnHead + "spec: {image: ok}\n"
		objs, err := parse(t, src, Options{})
		requireError(t, err, 0, 1, "", "larger than")
		require.Len(t, objs, 1, "the next document still parses")
		assert.Equal(t, "ok", objs[0].Function.Image)
	})
	t.Run("huge stream", func(t *testing.T) {
		doc := fnHead + "spec: {image: x, env: {A: \"" + strings.Repeat("x", 1000) + "\"}}\n---\n"
		src := strings.Repeat(doc, MaxInputBytes/len(doc)+1)
		objs, err := parse(t, src, Options{})
		require.ErrorContains(t, err, "the stream is larger than")
		assert.Empty(t, objs)
	})
	t.Run("alias bomb", func(t *testing.T) {
		src := fnHead + "x: &a [1,1,1,1,1,1,1,1,1,1]\n"
		prev := "a"
		for i := range 9 {
			name := string(rune('b' + i))
			src += "x" + name + ": &" + name + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
			prev = name
		}
		src = strings.Replace(src, "x: &a", "spec: {image: x}\nxa: &a", 1)
		src += "spec2: *" + prev + "\n"
		_, err := parse(t, src, Options{})
		require.Error(t, err)
	})
	t.Run("aliases are followed", func(t *testing.T) {
		objs, err := parse(t, "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, labels: &l {app: x}}\nspec: {image: x, env: *l}\n", Options{})
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"app": "x"}, objs[0].Function.Env)
	})
}

func TestParseResolvedStream(t *testing.T) {
	src := "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    pw: {value: aGk=}\n"
	objs, err := parse(t, src, Options{Resolved: true})
	require.NoError(t, err)
	assert.Equal(t, []byte("hi"), objs[0].Secret.Data["pw"].Value)

	_, err = parse(t, strings.Replace(src, "{value: aGk=}", "{fromFile: /etc/shadow}", 1), Options{Resolved: true})
	requireError(t, err, 0, 6, "spec.data.pw", "a resolved stream carries values")
	_, err = parse(t, strings.Replace(src, "aGk=", "not base64!", 1), Options{Resolved: true})
	requireError(t, err, 0, 6, "spec.data.pw.value", "must be base64")
}

func TestResolve(t *testing.T) {
	objs, err := Parse("conf/app.yaml", strings.NewReader("apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    a: {fromFile: pw.txt}\n    b: {fromFile: /abs/pw}\n    c: {fromEnv: C}\n    d: {fromEnv: EMPTY}\n"), Options{})
	require.NoError(t, err)
	files := map[string]string{"conf/pw.txt": "one", "/abs/pw": "two"}
	env := map[string]string{"C": "three", "EMPTY": ""}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, errors.New("no such file")
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	require.NoError(t, Resolve(objs, readFile, getenv))
	d := objs[0].Secret.Data
	assert.Equal(t, "one", string(d["a"].Value))
	assert.Equal(t, "two", string(d["b"].Value))
	assert.Equal(t, "three", string(d["c"].Value))
	assert.Equal(t, []byte{}, d["d"].Value, "an empty variable is a value")

	// Rendered resolved, the stream parses on the server side.
	out, err := Render(objs, "json")
	require.NoError(t, err)
	back, err := Parse("-", strings.NewReader(string(out)), Options{Resolved: true})
	require.NoError(t, err)
	assert.Equal(t, "one", string(back[0].Secret.Data["a"].Value))

	delete(files, "/abs/pw")
	delete(env, "C")
	objs, err = Parse("conf/app.yaml", strings.NewReader("apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    b: {fromFile: /abs/pw}\n    c: {fromEnv: C}\n"), Options{})
	require.NoError(t, err)
	err = Resolve(objs, readFile, getenv)
	var es Errors
	require.ErrorAs(t, err, &es)
	require.Len(t, es, 2)
	assert.Equal(t, "conf/app.yaml: document 1, line 6: spec.data.b: fromFile: no such file", es[0].Error())
	assert.Equal(t, "conf/app.yaml: document 1, line 7: spec.data.c: fromEnv: variable C is not set", es[1].Error())
}

func TestLabelsStayInMetadata(t *testing.T) {
	objs, err := parse(t, "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: a, labels: {app: x}}\nspec: {image: x}\n", Options{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"app": "x"}, objs[0].Metadata.Labels)
	assert.Equal(t, "x", objs[0].APISpec().Image)
	out, err := Render(objs, "yaml")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(out), "labels:"), "labels are written once, under metadata:\n%s", out)
}
