package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeSpecDefaults(t *testing.T) {
	spec, err := DecodeSpec([]byte(`{"image":"hello:latest"}`))
	require.NoError(t, err)
	assert.Equal(t, 8080, spec.Port)
	assert.Equal(t, 100, spec.Concurrency.Target)
	assert.Equal(t, 0.7, spec.Concurrency.TargetUtilization)
	assert.Equal(t, 0, spec.Concurrency.HardLimit)
	assert.Equal(t, 0, spec.Scale.Min)
	assert.Equal(t, 0, spec.Scale.Max)
	require.NotNil(t, spec.Scale.Initial)
	assert.Equal(t, 1, *spec.Scale.Initial)
	assert.Equal(t, "30s", spec.Scale.ScaleToZeroGrace.String())
	assert.Equal(t, "5m0s", spec.Timeout.String())
	assert.Equal(t, "256Mi", spec.Resources.Memory)
	assert.Equal(t, 1.0, spec.Resources.CPU)

	again, err := DecodeSpec([]byte(`{"image":"hello:latest","port":8080,"scale":{"initial":1}}`))
	require.NoError(t, err)
	assert.Equal(t, spec, again, "explicit defaults and omitted fields must give the same spec")
	assert.Nil(t, spec.Async, "no async policy is stored unless given, so old specs keep their revisions")
	assert.Equal(t, DefaultAsyncMaxConcurrency, spec.AsyncMaxConcurrency())

	tuned, err := DecodeSpec([]byte(`{"image":"hello:latest","async":{"maxConcurrency":3}}`))
	require.NoError(t, err)
	assert.Equal(t, 3, tuned.AsyncMaxConcurrency())
}

func TestAsyncTarget(t *testing.T) {
	tests := []struct {
		name, body string
		want       int
	}{
		{"default: the concurrency target", `{"image":"a"}`, DefaultConcurrencyTarget},
		{"a tuned concurrency target", `{"image":"a","concurrency":{"target":7}}`, 7},
		{"capped by the hard limit", `{"image":"a","concurrency":{"target":50,"hardLimit":4}}`, 4},
		{"a hard limit above the target", `{"image":"a","concurrency":{"target":5,"hardLimit":40}}`, 5},
		{"async.target wins", `{"image":"a","concurrency":{"hardLimit":4},"async":{"target":25}}`, 25},
		{"async.target 0 is the default", `{"image":"a","async":{"target":0,"maxConcurrency":3}}`, DefaultConcurrencyTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := DecodeSpec([]byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.want, spec.AsyncTarget())
		})
	}
}

func TestDecodeSpecRejects(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty body", ``, "empty"},
		{"malformed", `{"image":`, "malformed JSON"},
		{"unknown field", `{"image":"a","imagee":"b"}`, "unknown field"},
		{"trailing data", `{"image":"a"} {}`, "after the object"},
		{"missing image", `{}`, "image: is required"},
		{"bad port", `{"image":"a","port":70000}`, "port"},
		{"unknown protocol", `{"image":"a","protocol":"h3"}`, "protocol"},
		{"protocol by case", `{"image":"a","protocol":"H2C"}`, "protocol"},
		{"negative min", `{"image":"a","scale":{"min":-1}}`, "scale.min"},
		{"negative max", `{"image":"a","scale":{"max":-2}}`, "scale.max"},
		{"inverted bounds", `{"image":"a","scale":{"min":5,"max":2}}`, "above scale.max"},
		{"negative initial", `{"image":"a","scale":{"initial":-1}}`, "scale.initial"},
		{"negative hard limit", `{"image":"a","concurrency":{"hardLimit":-1}}`, "hardLimit"},
		{"utilization above one", `{"image":"a","concurrency":{"targetUtilization":1.5}}`, "targetUtilization"},
		{"bad metric", `{"image":"a","concurrency":{"metric":"cpu"}}`, "metric"},
		{"bad duration", `{"image":"a","timeout":"soon"}`, "invalid duration"},
		{"numeric duration", `{"image":"a","timeout":30}`, "duration must be a string"},
		{"bad memory", `{"image":"a","resources":{"memory":"lots"}}`, "resources.memory"},
		{"tiny memory", `{"image":"a","resources":{"memory":"1Ki"}}`, "minimum"},
		{"bad env name", `{"image":"a","env":{"1X":"y"}}`, "env"},
		{"PORT in env", `{"image":"a","env":{"PORT":"1"}}`, "PORT"},
		{"secret without target", `{"image":"a","secrets":[{"secret":"s","key":"k"}]}`, "exactly one of env and file"},
		{"secret file with slash", `{"image":"a","secrets":[{"secret":"s","key":"k","file":"../x"}]}`, "plain file name"},
		{"inline secret value", `{"image":"a","secrets":[{"name":"s","value":"v","env":"S"}]}`, "create a secret object (`ebb secrets create NAME"},
		{"inline secret name", `{"image":"a","secrets":[{"name":"s","env":"S"}]}`, "name the secret object"},
		{"secret without key", `{"image":"a","secrets":[{"secret":"s","env":"S"}]}`, "secrets[0].key"},
		{"bad secret key", `{"image":"a","secrets":[{"secret":"s","key":"a/b","env":"S"}]}`, "secrets[0].key"},
		{"bad secret name", `{"image":"a","secrets":[{"secret":"S_1","key":"k","env":"S"}]}`, "secrets[0].secret"},
		{"secret as PORT", `{"image":"a","secrets":[{"secret":"s","key":"k","env":"PORT"}]}`, "set by ebb"},
		{"secret as EBB_ variable", `{"image":"a","secrets":[{"secret":"s","key":"k","env":"EBB_REVISION"}]}`, "set by ebb"},
		{"one variable twice", `{"image":"a","secrets":[{"secret":"s","key":"k","env":"A"},{"secret":"t","key":"k","env":"A"}]}`, "env A is set twice"},
		{"timeout too long", `{"image":"a","timeout":"2h"}`, "timeout"},
		{"negative async concurrency", `{"image":"a","async":{"maxConcurrency":-1}}`, "async.maxConcurrency"},
		{"huge async concurrency", `{"image":"a","async":{"maxConcurrency":100000}}`, "async.maxConcurrency"},
		{"negative async target", `{"image":"a","async":{"target":-1}}`, "async.target"},
		{"huge async target", `{"image":"a","async":{"target":100001}}`, "async.target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeSpec([]byte(tt.body))
			require.Error(t, err)
			assert.True(t, IsValidation(err), "want a ValidationError, got %T", err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"hello", true},
		{"a", true},
		{"my-fn-2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Hello", false},
		{"-a", false},
		{"a-", false},
		{"a_b", false},
		{"a.b", false},
		{"../etc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("name", tt.name)
			assert.Equal(t, tt.ok, err == nil, "err=%v", err)
		})
	}
}

func TestValidateTraffic(t *testing.T) {
	exists := func(rev string) bool { return rev == "fn-00001" || rev == "fn-00002" }
	tests := []struct {
		name    string
		targets []TrafficTarget
		want    string
	}{
		{"latest", []TrafficTarget{{LatestRevision: true, Percent: 100}}, ""},
		{"split", []TrafficTarget{{Revision: "fn-00001", Percent: 90}, {Revision: "fn-00002", Percent: 10, Tag: "canary"}}, ""},
		{"zero percent tag", []TrafficTarget{{LatestRevision: true, Percent: 100}, {Revision: "fn-00001", Percent: 0, Tag: "old"}}, ""},
		{"empty", nil, "at least one"},
		{"sum 90", []TrafficTarget{{Revision: "fn-00001", Percent: 90}}, "sum to 90"},
		{"sum 110", []TrafficTarget{{Revision: "fn-00001", Percent: 60}, {Revision: "fn-00002", Percent: 50}}, "sum to 110"},
		{"missing revision", []TrafficTarget{{Revision: "fn-00009", Percent: 100}}, "does not exist"},
		{"both set", []TrafficTarget{{Revision: "fn-00001", LatestRevision: true, Percent: 100}}, "exactly one"},
		{"neither set", []TrafficTarget{{Percent: 100}}, "exactly one"},
		{"negative", []TrafficTarget{{Revision: "fn-00001", Percent: -10}, {Revision: "fn-00002", Percent: 110}}, "outside 0-100"},
		{"duplicate tag", []TrafficTarget{{Revision: "fn-00001", Percent: 50, Tag: "x"}, {Revision: "fn-00002", Percent: 50, Tag: "x"}}, "used twice"},
		{"bad tag", []TrafficTarget{{Revision: "fn-00001", Percent: 100, Tag: "Not_A_Label"}}, "DNS label"},
		{"url set", []TrafficTarget{{Revision: "fn-00001", Percent: 100, URL: "http://x"}}, "output only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTraffic(tt.targets, exists)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestValidateTrafficHeaders feeds header matches as a hostile client of
// the API might send them: each must be refused with a validation error
// (never a panic), or accepted only when the router can match it.
func TestValidateTrafficHeaders(t *testing.T) {
	exists := func(rev string) bool { return rev == "fn-00001" || rev == "fn-00002" }
	// match is a split of fn-00001=100 with fn-00002 matched by h at 0%.
	match := func(h map[string]string) []TrafficTarget {
		return []TrafficTarget{{Revision: "fn-00001", Percent: 100}, {Revision: "fn-00002", Headers: h}}
	}
	many := func(n int) map[string]string {
		h := map[string]string{}
		for i := 0; i < n; i++ {
			h[fmt.Sprintf("X-H%d", i)] = "v"
		}
		return h
	}
	tooManyTargets := []TrafficTarget{{Revision: "fn-00001", Percent: 100}}
	for i := 0; i <= MaxHeaderMatchTargets; i++ {
		tooManyTargets = append(tooManyTargets, TrafficTarget{Revision: "fn-00002", Headers: map[string]string{"user": fmt.Sprint(i)}})
	}
	tests := []struct {
		name    string
		targets []TrafficTarget
		want    string
	}{
		{"one header at 0%", match(map[string]string{"user": "tester"}), ""},
		{"several headers", match(map[string]string{"User": "tester", "X-Env": "beta", "x-weird!#$%&'*+-.^_`|~": "a b\tc=d:e,f"}), ""},
		{"on latestRevision", []TrafficTarget{{Revision: "fn-00001", Percent: 100}, {LatestRevision: true, Headers: map[string]string{"user": "t"}}}, ""},
		{"with a percent and a tag", []TrafficTarget{{Revision: "fn-00001", Percent: 90}, {Revision: "fn-00002", Percent: 10, Tag: "canary", Headers: map[string]string{"user": "t"}}}, ""},
		{"most headers", match(many(MaxMatchHeaders)), ""},
		{"longest name and value", match(map[string]string{strings.Repeat("h", MaxHeaderNameLen): strings.Repeat("v", MaxHeaderValueLen)}), ""},
		{"most targets", tooManyTargets[:len(tooManyTargets)-1], ""},

		{"percents still sum to 100", []TrafficTarget{{Revision: "fn-00002", Headers: map[string]string{"user": "t"}}}, "sum to 0"},
		{"empty map", match(map[string]string{}), "at least one header"},
		{"empty name", match(map[string]string{"": "x"}), "not an HTTP header name"},
		{"space in name", match(map[string]string{"x user": "x"}), "not an HTTP header name"},
		{"colon in name", match(map[string]string{"user:": "x"}), "not an HTTP header name"},
		{"CRLF in name", match(map[string]string{"user\r\nX-Evil": "x"}), "not an HTTP header name"},
		{"NUL in name", match(map[string]string{"us\x00er": "x"}), "not an HTTP header name"},
		{"non-ASCII name", match(map[string]string{"usér": "x"}), "not an HTTP header name"},
		{"name too long", match(map[string]string{strings.Repeat("h", MaxHeaderNameLen+1): "x"}), "not an HTTP header name"},
		{"names differ in case only", match(map[string]string{"User": "a", "user": "b"}), "named twice"},
		{"host", match(map[string]string{"HOST": "fn.localhost"}), "cannot be matched"},
		{"cookie", match(map[string]string{"Cookie": "a=b"}), "cannot be matched"},
		{"trailer", match(map[string]string{"trailer": "x"}), "cannot be matched"},
		{"empty value", match(map[string]string{"user": ""}), "must not be empty"},
		{"CRLF in value", match(map[string]string{"user": "a\r\nX-Evil: 1"}), "byte 0x0d"},
		{"NUL in value", match(map[string]string{"user": "a\x00b"}), "byte 0x00"},
		{"DEL in value", match(map[string]string{"user": "a\x7fb"}), "byte 0x7f"},
		{"non-ASCII value", match(map[string]string{"user": "tëster"}), "byte 0xc3"},
		{"leading space", match(map[string]string{"user": " tester"}), "white space"},
		{"trailing tab", match(map[string]string{"user": "tester\t"}), "white space"},
		{"value too long", match(map[string]string{"user": strings.Repeat("v", MaxHeaderValueLen+1)}), "longer than"},
		{"too many headers", match(many(MaxMatchHeaders + 1)), "at most 8 headers"},
		{"too many targets", tooManyTargets, "at most 16 targets"},
		{"missing revision", []TrafficTarget{{Revision: "fn-00001", Percent: 100}, {Revision: "fn-00009", Headers: map[string]string{"user": "t"}}}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTraffic(tt.targets, exists)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"256Mi", 256 << 20, true},
		{"1Gi", 1 << 30, true},
		{"512M", 512e6, true},
		{"1048576", 1 << 20, true},
		{"", 0, false},
		{"-1Mi", 0, false},
		{"1.5Gi", 0, false},
		{"99999999999999Gi", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBytes(tt.in)
			assert.Equal(t, tt.ok, err == nil, "err=%v", err)
			if tt.ok {
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

// FuzzDecodeSpec checks that no input crashes the decoder and that every
// accepted spec is stable: defaulting it again changes nothing and it
// still validates.
func FuzzDecodeSpec(f *testing.F) {
	seeds := []string{
		`{"image":"hello:latest"}`,
		`{"image":"a","port":9000,"env":{"A":"b"},"args":["x"],"concurrency":{"target":10,"hardLimit":10},"scale":{"min":1,"max":5,"initial":0,"scaleToZeroGrace":"10s"},"resources":{"cpu":0.5,"memory":"128Mi","pids":64},"timeout":"5s"}`,
		`{"image":"a","secrets":[{"secret":"db","key":"password","env":"DB_PASSWORD"},{"secret":"tls","key":"key.pem","file":"key.pem"}]}`,
		`{"image":"a","secrets":[{"name":"db","value":"pw","env":"DB_PASSWORD"}]}`,
		`{"image":"a","concurrency":{"metric":"rps","rpsTarget":50}}`,
		`{"image":"a","scale":{"min":5,"max":2}}`,
		`[]`, `null`, `{"image":1}`, `{"timeout":"-1s","image":"x"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, err := DecodeSpec(body)
		if err != nil {
			if !IsValidation(err) {
				t.Fatalf("decode error is not a ValidationError: %T %v", err, err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted spec fails validation: %v", err)
		}
		if again := spec.WithDefaults(); !equalSpecs(again, spec) {
			t.Fatalf("defaulting is not idempotent:\n%+v\n%+v", spec, again)
		}
	})
}

func equalSpecs(a, b FunctionSpec) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestDecodeSpecProtocol(t *testing.T) {
	for _, p := range []string{"", ProtocolHTTP1, ProtocolH2C} {
		spec, err := DecodeSpec([]byte(`{"image":"a","protocol":"` + p + `"}`))
		require.NoError(t, err, p)
		assert.Equal(t, p, spec.Protocol, "the protocol is stored as given, empty meaning http1")
		assert.Equal(t, p == ProtocolH2C, spec.SpeaksH2C())
	}
}
