package promql

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testVars = Vars{
	Canary:    "hello-00002",
	Stable:    "hello-00001",
	Function:  "hello",
	Namespace: "shop",
	Interval:  10 * time.Second,
}

func TestExpand(t *testing.T) {
	huge := strings.Repeat(`x{a="b"} + `, 100_000) + "1"
	tests := []struct {
		name  string
		query string
		vars  Vars
		want  string
		err   string // substring of the error; "" means none
	}{
		{name: "no variables", query: `sum(up)`, want: `sum(up)`},
		{name: "empty", query: ``, want: ``},
		{
			name:  "flagger style error rate",
			query: `sum(rate(http_requests_total{revision="{{canary}}",code=~"5.."}[{{interval}}])) / sum(rate(http_requests_total{revision="{{canary}}"}[{{interval}}]))`,
			want:  `sum(rate(http_requests_total{revision="hello-00002",code=~"5.."}[10s])) / sum(rate(http_requests_total{revision="hello-00002"}[10s]))`,
		},
		{
			name:  "every variable",
			query: `{{canary}} {{stable}} {{function}} {{namespace}} {{interval}}`,
			want:  `hello-00002 hello-00001 hello shop 10s`,
		},
		{name: "spaces inside the braces", query: `x{r="{{ canary }}",s="{{  stable}}",f="{{function	}}"}`, want: `x{r="hello-00002",s="hello-00001",f="hello"}`},
		{name: "adjacent", query: `{{canary}}{{stable}}`, want: `hello-00002hello-00001`},
		{name: "single braces are PromQL", query: `x{a="{b}"}`, want: `x{a="{b}"}`},
		{name: "a lone closing pair is kept", query: `x}} y`, want: `x}} y`},
		{name: "NUL outside braces is kept", query: "up\x00", want: "up\x00"},
		{name: "huge without variables", query: huge, want: huge},

		{name: "unknown variable", query: `x{r="{{revision}}"}`, err: `unknown template variable "revision"`},
		{name: "case matters", query: `{{Canary}}`, err: `unknown template variable "Canary"`},
		{name: "empty braces", query: `{{}}`, err: `unknown template variable ""`},
		{name: "go template syntax is not run", query: `{{.Canary}}`, err: `unknown template variable ".Canary"`},
		{name: "unclosed", query: `x{r="{{canary"}`, err: `"{{canary\"}" has no closing }}`},
		{name: "unclosed at the end", query: `x {{`, err: `no closing }}`},
		{name: "closed only by a single brace", query: `{{canary}`, err: `no closing }}`},
		{name: "nested", query: `{{ {{canary}} }}`, err: `unknown template variable "{{canary"`},
		{name: "triple braces", query: `{{{canary}}}`, err: `unknown template variable "{canary"`},
		{name: "NUL inside braces", query: "{{can\x00ary}}", err: `unknown template variable "can\x00ary"`},
		{name: "newline inside braces", query: "{{canary\n}}", err: `unknown template variable "canary\n"`},
		{name: "huge name is cut in the error", query: "{{" + strings.Repeat("a", 1<<20) + "}}", err: `"` + strings.Repeat("a", maxShown) + `"…`},
		{name: "huge unclosed", query: "{{" + huge, err: "no closing }}"},
		{name: "variable with no value", query: `{{stable}}`, vars: Vars{Canary: "a"}, err: `{{stable}} has no value`},
		{name: "value with a quote", query: `x{r="{{canary}}"}`, vars: Vars{Canary: `a"} or vector(0) #`}, err: `holds a quote`},
		{name: "value with a backslash", query: `{{function}}`, vars: Vars{Function: `a\`}, err: `holds a quote, backslash`},
		{name: "value with a NUL", query: `{{namespace}}`, vars: Vars{Namespace: "a\x00"}, err: `NUL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := testVars
			if tt.vars != (Vars{}) {
				vars = tt.vars
			}
			got, err := Expand(tt.query, vars)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.Less(t, len(err.Error()), 400, "an error repeats at most a bounded part of a hostile query")
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestExpandInterval(t *testing.T) {
	tests := []struct {
		interval time.Duration
		want     string
	}{
		{0, "1s"},
		{-time.Minute, "1s"},
		{time.Nanosecond, "1s"},
		{100 * time.Millisecond, "1s"},
		{time.Second, "1s"},
		{1500 * time.Millisecond, "2s"},
		{10 * time.Second, "10s"},
		{10*time.Second + time.Nanosecond, "11s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 2*time.Minute + 3*time.Second, "1h2m3s"},
		{25 * time.Hour, "1d1h"},
		{time.Duration(1<<63 - 1), "106751d23h47m16s"}, // rounded down rather than overflow
	}
	for _, tt := range tests {
		t.Run(tt.interval.String(), func(t *testing.T) {
			got, err := Expand("rate(x[{{interval}}])", Vars{Interval: tt.interval})
			require.NoError(t, err)
			assert.Equal(t, "rate(x["+tt.want+"])", got)
		})
	}
}
