package containerdproc

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{}},
		{name: "skip probe", cfg: Config{Address: "-", DataDir: "/tmp/x"}},
		{name: "relative data dir", cfg: Config{DataDir: "var/lib/ebb"}, wantErr: "clean absolute path"},
		{name: "unclean data dir", cfg: Config{DataDir: "/var/lib/../ebb"}, wantErr: "clean absolute path"},
		{name: "quote in data dir", cfg: Config{DataDir: `/var/"ebb`}, wantErr: "quotes"},
		{name: "newline in data dir", cfg: Config{DataDir: "/var/e\nbb"}, wantErr: "control characters"},
		{name: "socket path too long", cfg: Config{DataDir: "/" + strings.Repeat("d", 90)}, wantErr: "too long"},
		{name: "relative address", cfg: Config{Address: "containerd.sock"}, wantErr: "absolute socket path"},
		{name: "negative grace", cfg: Config{StopGrace: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	assert.Equal(t, DefaultAddress, c.Address)
	assert.Equal(t, DefaultDataDir, c.DataDir)
	assert.Equal(t, DefaultBinary, c.Binary)
	assert.Equal(t, DefaultStartTimeout, c.StartTimeout)
	assert.Equal(t, DefaultStopGrace, c.StopGrace)
	assert.Equal(t, DefaultProbeTimeout, c.ProbeTimeout)
}

func TestRenderConfigKeepsEverythingUnderDataDir(t *testing.T) {
	out := renderConfig("/d")
	for _, want := range []string{
		`root = "/d/root"`,
		`state = "/d/state"`,
		`address = "/d/containerd.sock"`,
		`path = "/d/opt"`,
		`"io.containerd.grpc.v1.cri"`,
		`"io.containerd.snapshotter.v1.overlayfs"`,
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "/var/lib/containerd")
	assert.NotContains(t, out, "/run/containerd")
}
