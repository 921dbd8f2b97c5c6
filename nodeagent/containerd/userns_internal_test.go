package containerd

import (
	"context"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/nodeagent"
)

func TestShiftID(t *testing.T) {
	m := nodeagent.IDMap{HostID: 1 << 31, Size: 65536}
	tests := []struct {
		name   string
		id     uint32
		wantID uint32
	}{
		{"root", 0, 1 << 31},
		{"a user", 1000, 1<<31 + 1000},
		{"the last mapped id", 65535, 1<<31 + 65535},
		{"unmapped: left alone, not pushed into the next range", 65536, 65536},
		{"unmapped, high", 1 << 30, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantID, shiftID(tt.id, m))
		})
	}
}

func TestValidIDMap(t *testing.T) {
	tests := []struct {
		name    string
		m       nodeagent.IDMap
		wantErr string
	}{
		{"the default range", nodeagent.IDMap{HostID: 1 << 31, Size: 65536}, ""},
		{"no ids", nodeagent.IDMap{HostID: 1 << 31}, "maps no ids"},
		{"onto the host's root", nodeagent.IDMap{HostID: 0, Size: 65536}, "host's root"},
		{"past the last id", nodeagent.IDMap{HostID: 1<<32 - 65536, Size: 65536}, "past the host's last id"},
		{"up to the last id", nodeagent.IDMap{HostID: 1<<32 - 65537, Size: 65536}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validIDMap(tt.m)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestHostIDs(t *testing.T) {
	m := &nodeagent.IDMap{HostID: 1 << 31, Size: 65536}
	tests := []struct {
		name             string
		uid, gid         uint32
		userNS           *nodeagent.IDMap
		wantUID, wantGID uint32
		wantErr          bool
	}{
		{name: "host namespace: the same ids", uid: 1000, gid: 1001, wantUID: 1000, wantGID: 1001},
		{name: "mapped", uid: 65532, gid: 65532, userNS: m, wantUID: 1<<31 + 65532, wantGID: 1<<31 + 65532},
		{name: "root, mapped", userNS: m, wantUID: 1 << 31, wantGID: 1 << 31},
		{name: "an unmapped uid", uid: 70000, userNS: m, wantErr: true},
		{name: "an unmapped gid", gid: 65536, userNS: m, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, gid, err := hostIDs(tt.uid, tt.gid, tt.userNS)
			if tt.wantErr {
				require.ErrorContains(t, err, "outside the user namespace")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantUID, uid)
			assert.Equal(t, tt.wantGID, gid)
		})
	}
}

func TestWithCapabilities(t *testing.T) {
	all := []string{"CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	tests := []struct {
		name     string
		uid      uint32
		wantHeld []string
	}{
		{"root holds the bounding set", 0, all},
		{"another user holds nothing", 65532, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{User: specs.User{UID: tt.uid},
				Capabilities: &specs.LinuxCapabilities{Ambient: []string{"CAP_NET_RAW"}, Inheritable: []string{"CAP_NET_RAW"}}}}
			require.NoError(t, withCapabilities(context.Background(), nil, nil, s))
			assert.Equal(t, all, s.Process.Capabilities.Bounding)
			assert.Equal(t, tt.wantHeld, s.Process.Capabilities.Effective)
			assert.Equal(t, tt.wantHeld, s.Process.Capabilities.Permitted)
			assert.Empty(t, s.Process.Capabilities.Ambient)
			assert.Empty(t, s.Process.Capabilities.Inheritable)
		})
	}
}
