package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestWithMatches(t *testing.T) {
	base := []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}}
	tests := []struct {
		name    string
		matches []string
		want    []api.TrafficTarget
		wantErr string
	}{
		{name: "none", want: base},
		{
			name:    "one header by generation",
			matches: []string{"2:user=tester"},
			want:    append(base, api.TrafficTarget{Revision: "hello-00002", Headers: map[string]string{"user": "tester"}}),
		},
		{
			name:    "several headers, several matches, in order",
			matches: []string{"hello-00002:x-env=beta,X-Team=core", "@latest:user=a=b:c"},
			want: append(base,
				api.TrafficTarget{Revision: "hello-00002", Headers: map[string]string{"x-env": "beta", "X-Team": "core"}},
				api.TrafficTarget{LatestRevision: true, Headers: map[string]string{"user": "a=b:c"}}),
		},
		{name: "no revision separator", matches: []string{"user=tester"}, wantErr: "want REVISION:HEADER=VALUE"},
		{name: "no headers", matches: []string{"2:"}, wantErr: "want REVISION:HEADER=VALUE"},
		{name: "no value separator", matches: []string{"2:user"}, wantErr: `"user" is not HEADER=VALUE`},
		{name: "empty name", matches: []string{"2:=x"}, wantErr: "is not HEADER=VALUE"},
		{name: "empty pair", matches: []string{"2:user=a,"}, wantErr: "is not HEADER=VALUE"},
		{name: "header twice", matches: []string{"2:user=a,user=b"}, wantErr: "named twice"},
		{name: "names differ in case only", matches: []string{"2:user=a,User=b"}, wantErr: "named twice"},
		{name: "empty value", matches: []string{"2:user="}, wantErr: "must not be empty"},
		{name: "bad header name", matches: []string{"2:x user=a"}, wantErr: "not an HTTP header name"},
		{name: "control byte in value", matches: []string{"2:user=a\x01"}, wantErr: "byte 0x01"},
		{name: "host", matches: []string{"2:host=x"}, wantErr: "cannot be matched"},
		{name: "bad revision", matches: []string{"0:user=a"}, wantErr: "generation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withMatches("hello", append([]api.TrafficTarget(nil), base...), tt.matches)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestPrintTrafficMatch(t *testing.T) {
	var plain, matched bytes.Buffer
	require.NoError(t, printTraffic(&plain, api.Function{Traffic: []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}}}))
	assert.NotContains(t, plain.String(), "MATCH", "no column without matches")
	require.NoError(t, printTraffic(&matched, api.Function{Traffic: []api.TrafficTarget{
		{Revision: "hello-00001", Percent: 100},
		{Revision: "hello-00002", Headers: map[string]string{"x-env": "beta", "User": "tester"}},
	}}))
	assert.Contains(t, matched.String(), "MATCH")
	assert.Contains(t, matched.String(), "User=tester,x-env=beta")
}
