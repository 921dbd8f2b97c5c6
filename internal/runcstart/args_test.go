package runcstart

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		args string
		want Invocation
		ok   bool
	}{
		{
			name: "the shim's start",
			args: "--root /run/containerd/runc/ebb --log /run/b/log.json --log-format json start fn-00001-abc",
			want: Invocation{Root: "/run/containerd/runc/ebb", Log: "/run/b/log.json", LogFormat: "json", ID: "fn-00001-abc"},
			ok:   true,
		},
		{
			name: "defaults",
			args: "start c1",
			want: Invocation{Root: DefaultRoot, LogFormat: "text", ID: "c1"},
			ok:   true,
		},
		{
			name: "flags with = and booleans",
			args: "--root=/r --debug --systemd-cgroup --rootless=false --criu criu start c1",
			want: Invocation{Root: "/r", LogFormat: "text", ID: "c1"},
			ok:   true,
		},
		{
			name: "flags written with =, and a value after a space",
			args: "--log-format=json --rootless true --log=/l start c1",
			want: Invocation{Root: DefaultRoot, Log: "/l", LogFormat: "json", ID: "c1"},
			ok:   true,
		},
		{
			name: "another command keeps its global flags, for logging",
			args: "--root /r --log /l --log-format json delete -f c1",
			want: Invocation{Root: "/r", Log: "/l", LogFormat: "json"},
		},
		{name: "start with a flag of its own", args: "--root /r start --help c1", want: Invocation{Root: "/r", LogFormat: "text"}},
		{name: "start without an id", args: "--root /r start", want: Invocation{Root: "/r", LogFormat: "text"}},
		{name: "two ids", args: "start c1 c2", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
		{name: "unknown global flag", args: "--log /l --frobnicate start c1", want: Invocation{Root: DefaultRoot, Log: "/l", LogFormat: "text"}},
		{name: "a boolean flag given a value", args: "--debug=true start c1", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
		{name: "value flag without its value", args: "--root", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
		{name: "id that climbs out of root", args: "start ..", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
		{name: "id with a slash", args: "start a/b", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
		{name: "nothing", args: "", want: Invocation{Root: DefaultRoot, LogFormat: "text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Parse(strings.Fields(tt.args))
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}
