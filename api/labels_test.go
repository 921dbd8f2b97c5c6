package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateLabels(t *testing.T) {
	good := []map[string]string{
		nil, {}, {"app": "shop"}, {"app": ""}, {"a.b_c-d": "X.y_z-1"},
		{"example.com/owner": "team-a"}, {strings.Repeat("k", 63): strings.Repeat("v", 63)},
		{strings.Repeat("p", 63) + "." + strings.Repeat("q", 63) + "/n": "v"},
	}
	for _, l := range good {
		assert.NoError(t, ValidateLabels(l), "%v", l)
	}
	bad := []map[string]string{
		{"": "x"}, {"-a": "x"}, {"a-": "x"}, {"a b": "x"}, {strings.Repeat("k", 64): "x"},
		{"/a": "x"}, {"a/": "x"}, {"Example.com/a": "x"}, {"a/b/c": "x"}, {"exa_mple.com/a": "x"},
		{strings.Repeat("p", 254) + "/a": "x"}, {"a": strings.Repeat("v", 64)}, {"a": "-v"}, {"a": "v v"},
		{"a": "v\x00"}, {"a": "ü"}, {"a\n": "v"},
	}
	for _, l := range bad {
		err := ValidateLabels(l)
		require.Error(t, err, "%q", l)
		assert.True(t, IsValidation(err))
	}
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	assert.Error(t, ValidateLabels(many))
}

func TestParseSelector(t *testing.T) {
	labels := map[string]string{"app": "shop", "tier": "web", "empty": ""}
	for _, tt := range []struct {
		in      string
		matches bool
		str     string
	}{
		{"", true, ""},
		{"app=shop", true, "app=shop"},
		{"app==shop", true, "app=shop"},
		{" tier = web , app=shop ", true, "app=shop,tier=web"},
		{"app=other", false, "app=other"},
		{"missing=", false, "missing="},
		{"empty=", true, "empty="},
		{"app=shop,app=shop", true, "app=shop"},
	} {
		sel, err := ParseSelector(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.matches, sel.Matches(labels), tt.in)
		assert.Equal(t, tt.str, sel.String(), tt.in)
	}
	for _, in := range []string{"app", "app!=x", "app=a,app=b", ",", "app=shop,", "-x=y", "a=b=c", "a in (b)", "a=" + strings.Repeat("v", 64)} {
		_, err := ParseSelector(in)
		require.Error(t, err, in)
		assert.True(t, IsValidation(err), in)
	}
	assert.True(t, SelectorFromLabels(map[string]string{"app": "shop"}).Matches(labels))
	assert.True(t, SelectorFromLabels(nil).Empty())
}

func TestParseIfMatch(t *testing.T) {
	for in, want := range map[string]string{`"12"`: "12", "12": "12", `W/"12"`: "12", " * ": "*", "": "", `"`: `"`} {
		assert.Equal(t, want, ParseIfMatch(in), in)
	}
}

func TestRevisionSpecKeepsTheRest(t *testing.T) {
	s := FunctionSpec{Image: "x", Port: 1, Labels: map[string]string{"a": "b"}, Rollout: &RolloutPolicy{Steps: []int{10, 100}}}
	assert.Equal(t, FunctionSpec{Image: "x", Port: 1}, s.RevisionSpec())
	assert.NotNil(t, s.Rollout, "the receiver is untouched")
	assert.Equal(t, "b", s.Labels["a"], "the receiver is untouched")
}
