package bpfsync

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/bpf"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "minimal", cfg: Config{Node: "n1"}},
		{name: "replica CIDR", cfg: Config{Node: "n1", ReplicaCIDR: netip.MustParsePrefix("10.213.0.0/18")}},
		{name: "no node", cfg: Config{}, wantErr: "node"},
		{name: "negative interval", cfg: Config{Node: "n1", RetryInterval: -1}, wantErr: "must not be negative"},
		{name: "IPv6 replica CIDR", cfg: Config{Node: "n1", ReplicaCIDR: netip.MustParsePrefix("fd00::/64")}, wantErr: "replica CIDR fd00::/64: want IPv4"},
		{name: "bad VIP range", cfg: Config{Node: "n1", VIPs: bpfOptions("10.0.0.0/8")}, wantErr: "must lie in 127.0.0.0/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func bpfOptions(prefix string) bpf.Options {
	return bpf.Options{VIPPrefix: netip.MustParsePrefix(prefix)}
}
