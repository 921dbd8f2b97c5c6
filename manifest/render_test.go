package manifest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// storedFunction is a function as the API returns it: a defaulted spec,
// traffic with output-only URLs.
func storedFunction() api.Function {
	spec := api.FunctionSpec{
		Image:   "hello:latest",
		Env:     map[string]string{"A": "1", "TRUE": "true", "EMPTY": "", "MULTI": "line one\nline two"},
		Args:    []string{"--x", "0"},
		Secrets: []api.Secret{{Secret: "db", Key: "pw", Env: "PW"}, {Secret: "db", Key: "cert", File: "cert.pem"}},
		Scale:   api.Scale{Min: 1, Max: 4, ScaleDownDelay: api.D(90 * time.Second)},
		Concurrency: api.Concurrency{
			HardLimit: 7, TargetUtilization: 0.65,
		},
		Resources: api.Resources{CPU: 0.25, Memory: "64Mi"},
	}.WithDefaults()
	return api.Function{
		Name: "hello", Namespace: "team-a", Spec: spec,
		URL: "http://hello.team-a.example.com", LatestRevision: "hello.team-a-00002",
		Traffic: []api.TrafficTarget{
			// The API names the revision "latest" resolves to now.
			{Revision: "hello.team-a-00002", LatestRevision: true, Percent: 70, Tag: "latest", URL: "http://latest-hello.team-a.example.com"},
			{Revision: "hello.team-a-00001", Percent: 30},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, fn := range []api.Function{
		storedFunction(),
		{Name: "bare", Namespace: "default", Spec: api.FunctionSpec{Image: "x"}.WithDefaults()},
		{Name: "zero", Namespace: "default", Spec: api.FunctionSpec{Image: "x", Scale: api.Scale{Initial: intp(0)}}.WithDefaults()},
	} {
		t.Run(fn.Name, func(t *testing.T) {
			obj := FromFunction(fn)
			for _, tt := range obj.Function.Traffic {
				assert.False(t, tt.LatestRevision && tt.Revision != "", "a manifest says latest, not which revision it is now: %+v", tt)
			}
			for _, format := range []string{"yaml", "json"} {
				out, err := Render([]Object{obj}, format)
				require.NoError(t, err)
				back, err := Parse("export."+format, strings.NewReader(string(out)), Options{})
				require.NoError(t, err, "%s", out)
				require.Len(t, back, 1)
				back[0].Source = Source{}
				assert.Equal(t, obj, back[0], "%s", out)
				assert.Equal(t, fn.Spec, back[0].APISpec(), "the spec applies back unchanged")
			}
		})
	}
}

func TestFromFunctionDoesNotAlias(t *testing.T) {
	fn := storedFunction()
	obj := FromFunction(fn)
	obj.Function.Env["A"] = "changed"
	*obj.Function.Scale.Initial = 9
	obj.Function.Traffic[0].Percent = 1
	assert.Equal(t, "1", fn.Spec.Env["A"])
	assert.Equal(t, 1, *fn.Spec.Scale.Initial)
	assert.Equal(t, 70, fn.Traffic[0].Percent)
	assert.Empty(t, obj.Function.Traffic[0].URL, "URLs are output only")
}

// A manifest and the function it created render the same once normalized,
// so ebb diff shows nothing.
func TestNormalize(t *testing.T) {
	objs, err := parse(t, "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: hello}\nspec: {image: hello:1, env: {}}\n", Options{})
	require.NoError(t, err)
	desired := objs[0]
	current := FromFunction(api.Function{
		Name: "hello", Namespace: "default", Spec: desired.APISpec().WithDefaults(),
		Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100, URL: "http://hello.example.com"}},
	})
	a, err := Render([]Object{Normalize(desired)}, "yaml")
	require.NoError(t, err)
	b, err := Render([]Object{Normalize(current)}, "yaml")
	require.NoError(t, err)
	assert.Equal(t, string(b), string(a))
	assert.Contains(t, string(a), "namespace: default")
	assert.Contains(t, string(a), "timeout: 5m0s", "defaults are filled in")

	// Normalize copies: the input is untouched.
	assert.Nil(t, desired.Function.Traffic)
	assert.Zero(t, desired.Function.Port)

	desired.Function.Scale.Min = 2
	c, err := Render([]Object{Normalize(desired)}, "yaml")
	require.NoError(t, err)
	assert.NotEqual(t, string(b), string(c))
}

func TestRenderErrors(t *testing.T) {
	_, err := Render([]Object{{Kind: KindFunction, Metadata: Metadata{Name: "a"}}}, "yaml")
	require.ErrorContains(t, err, "without a spec")
	_, err = Render([]Object{{Kind: "Pod"}}, "yaml")
	require.ErrorContains(t, err, "unknown kind")
	_, err = Render(nil, "toml")
	require.ErrorContains(t, err, "unknown format")
	_, err = Render([]Object{{Kind: KindSecret, Metadata: Metadata{Name: "s"}, Secret: &SecretSpec{Data: map[string]SecretValue{"k": {}}}}}, "yaml")
	require.ErrorContains(t, err, "no source")
}

func TestRenderStable(t *testing.T) {
	obj := FromFunction(storedFunction())
	first, err := Render([]Object{obj}, "yaml")
	require.NoError(t, err)
	for range 20 {
		again, err := Render([]Object{obj}, "yaml")
		require.NoError(t, err)
		require.Equal(t, string(first), string(again))
	}
	s := string(first)
	assert.True(t, strings.HasPrefix(s, "apiVersion: ebb.dev/v1\nkind: Function\nmetadata:\n  name: hello\n  namespace: team-a\nspec:\n  image: hello:latest\n"), s)
	assert.Contains(t, s, `"TRUE": "true"`, "strings that look like other types are quoted")
	assert.Contains(t, s, `EMPTY: ""`)
	assert.Contains(t, s, "- \"0\"")
}

// A namespace's and a secret's manifests render and parse back; a
// secret's keys read their values from the environment.
func TestFromNamespaceAndSecret(t *testing.T) {
	objs := []Object{
		FromNamespace(api.Namespace{Name: "team-a", Quota: api.Quota{Functions: 3, Memory: "1Gi"}}),
		FromSecret(api.SecretInfo{Name: "db-main", Namespace: "team-a", Keys: []string{"password", "tls.crt"}}),
	}
	out, err := Render(objs, "yaml")
	require.NoError(t, err)
	back, err := Parse("export.yaml", strings.NewReader(string(out)), Options{})
	require.NoError(t, err, "%s", out)
	require.Len(t, back, 2)
	assert.Equal(t, api.Quota{Functions: 3, Memory: "1Gi"}, back[0].Namespace.Quota)
	assert.Equal(t, "DB_MAIN_TLS_CRT", back[1].Secret.Data["tls.crt"].FromEnv)
	assert.Equal(t, "DB_MAIN_PASSWORD", back[1].Secret.Data["password"].FromEnv)
}

func TestOwnsTraffic(t *testing.T) {
	policy := &api.RolloutPolicy{Steps: []int{10, 100}}
	split := []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}}
	for _, tc := range []struct {
		name string
		fs   FunctionSpec
		owns bool
		want []api.TrafficTarget
	}{
		{"no traffic, no policy: latest gets all", FunctionSpec{}, true, []api.TrafficTarget{{LatestRevision: true, Percent: 100}}},
		{"no traffic, a policy: rollouts own it", FunctionSpec{FunctionSpec: api.FunctionSpec{Rollout: policy}}, false, nil},
		{"traffic and a policy: the document owns it", FunctionSpec{FunctionSpec: api.FunctionSpec{Rollout: policy}, Traffic: split}, true, split},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fs.Image = "hello:1"
			assert.Equal(t, tc.owns, OwnsTraffic(tc.fs))
			o := Normalize(Object{Kind: KindFunction, Metadata: Metadata{Name: "hello"}, Function: &tc.fs})
			assert.Equal(t, tc.want, o.Function.Traffic)
		})
	}
}
