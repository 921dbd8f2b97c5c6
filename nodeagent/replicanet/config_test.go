package replicanet

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// network is nodeagent.Network as ISOLATION.md names it; *Net must keep
// satisfying it.
type network interface {
	Prepare(ctx context.Context, id string, port int) (netnsPath string, err error)
	Addr(port int) netip.Addr
	Release(ctx context.Context, id string) error
	Adopt(ctx context.Context, ids []string) error
	NetnsPath(id string) string
}

var _ network = (*Net)(nil)

func validConfig() Config {
	return Config{
		Bridge:       "ebb0",
		CIDR:         netip.MustParsePrefix("10.213.0.0/18"),
		PortMin:      20000,
		PortMax:      29999,
		NetnsDir:     "/run/ebb/netns",
		OfferedPorts: []uint16{8080, 8081},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		err    string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"e2e window", func(c *Config) {
			c.Bridge, c.CIDR, c.PortMin, c.PortMax = "ebbt3", netip.MustParsePrefix("10.214.3.0/24"), 20300, 20399
		}, ""},
		{"exactly full", func(c *Config) { c.CIDR, c.PortMin, c.PortMax = netip.MustParsePrefix("10.1.0.0/29"), 100, 104 }, ""},
		{"one port too many", func(c *Config) { c.CIDR, c.PortMin, c.PortMax = netip.MustParsePrefix("10.1.0.0/29"), 100, 105 }, "too small"},
		{"no offered ports", func(c *Config) { c.OfferedPorts = nil }, ""},
		{"publish at the node's address", func(c *Config) { c.PublishIP = netip.MustParseAddr("192.0.2.10") }, ""},
		{"publish at loopback", func(c *Config) { c.PublishIP = netip.MustParseAddr("127.0.0.1") }, "publish address"},
		{"publish at 0.0.0.0", func(c *Config) { c.PublishIP = netip.MustParseAddr("0.0.0.0") }, "publish address"},
		{"publish at IPv6", func(c *Config) { c.PublishIP = netip.MustParseAddr("fd00::1") }, "publish address"},
		{"publish inside the replica range", func(c *Config) { c.PublishIP = c.Gateway() }, "publish address"},
		{"empty bridge", func(c *Config) { c.Bridge = "" }, "1 to 15 bytes"},
		{"16-byte bridge", func(c *Config) { c.Bridge = "ebb0123456789abc" }, "1 to 15 bytes"},
		{"15-byte bridge", func(c *Config) { c.Bridge = "ebb0123456789ab" }, ""},
		{"dot", func(c *Config) { c.Bridge = "." }, "reserved"},
		{"dotdot", func(c *Config) { c.Bridge = ".." }, "reserved"},
		{"slash", func(c *Config) { c.Bridge = "a/b" }, "only letters"},
		{"space", func(c *Config) { c.Bridge = "a b" }, "only letters"},
		{"colon", func(c *Config) { c.Bridge = "eth0:1" }, "only letters"},
		{"newline", func(c *Config) { c.Bridge = "br\n" }, "only letters"},
		{"nft injection", func(c *Config) { c.Bridge = `a";drop` }, "only letters"},
		{"non-ascii", func(c *Config) { c.Bridge = "brü" }, "only letters"},
		{"veth-shaped bridge", func(c *Config) { c.Bridge = "eb0123456789ab" }, "replica veths"},
		{"no cidr", func(c *Config) { c.CIDR = netip.Prefix{} }, "missing"},
		{"ipv6 cidr", func(c *Config) { c.CIDR = netip.MustParsePrefix("fd00::/64") }, "IPv4"},
		{"4in6 cidr", func(c *Config) { c.CIDR = netip.MustParsePrefix("::ffff:10.0.0.0/112") }, "IPv4"},
		{"host bits", func(c *Config) { c.CIDR = netip.MustParsePrefix("10.213.0.5/18") }, "did you mean 10.213.0.0/18"},
		{"loopback", func(c *Config) { c.CIDR = netip.MustParsePrefix("127.0.0.0/8") }, "private"},
		{"public", func(c *Config) { c.CIDR = netip.MustParsePrefix("8.8.0.0/16") }, "private"},
		{"wider than 10/8", func(c *Config) { c.CIDR = netip.MustParsePrefix("10.0.0.0/7") }, "private"},
		{"unspecified", func(c *Config) { c.CIDR = netip.MustParsePrefix("0.0.0.0/0") }, "private"},
		{"/31", func(c *Config) { c.CIDR, c.PortMin, c.PortMax = netip.MustParsePrefix("10.0.0.0/31"), 1, 1 }, "too small"},
		{"/32", func(c *Config) { c.CIDR, c.PortMin, c.PortMax = netip.MustParsePrefix("10.0.0.0/32"), 1, 1 }, "too small"},
		{"too small for ports", func(c *Config) { c.CIDR = netip.MustParsePrefix("10.213.0.0/24") }, "too small"},
		{"ports reversed", func(c *Config) { c.PortMin, c.PortMax = 30000, 20000 }, "ports"},
		{"port zero", func(c *Config) { c.PortMin = 0 }, "ports"},
		{"port too big", func(c *Config) { c.PortMax = 65536 }, "ports"},
		{"relative dir", func(c *Config) { c.NetnsDir = "run/netns" }, "netns dir"},
		{"unclean dir", func(c *Config) { c.NetnsDir = "/run/ebb/../netns" }, "netns dir"},
		{"root dir", func(c *Config) { c.NetnsDir = "/" }, "netns dir"},
		{"empty dir", func(c *Config) { c.NetnsDir = "" }, "netns dir"},
		{"offered zero", func(c *Config) { c.OfferedPorts = []uint16{8080, 0} }, "offered port 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.err == "" {
				require.NoError(t, err)
				_, err := New(c)
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
			_, err = New(c)
			assert.Error(t, err, "New accepts what Validate refuses")
		})
	}
}

func TestAddresses(t *testing.T) {
	c := validConfig()
	tests := []struct {
		port int
		want string
	}{
		{20000, "10.213.0.2"},
		{20001, "10.213.0.3"},
		{20253, "10.213.0.255"},
		{20254, "10.213.1.0"},
		{29999, "10.213.39.17"},
		{19999, "invalid IP"},
		{30000, "invalid IP"},
		{-1, "invalid IP"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, c.Addr(tt.port).String(), "port %d", tt.port)
	}
	assert.Equal(t, "10.213.0.1", c.Gateway().String())

	// The last port's address stays below broadcast, in every valid config.
	small := Config{CIDR: netip.MustParsePrefix("10.1.0.0/29"), PortMin: 100, PortMax: 104}
	assert.Equal(t, "10.1.0.6", small.Addr(104).String())
	assert.True(t, small.CIDR.Contains(small.Addr(104)))
	assert.NotEqual(t, "10.1.0.7", small.Addr(104).String())
	// Addresses never cross a byte boundary wrongly at the top of the space.
	top := Config{CIDR: netip.MustParsePrefix("10.255.255.0/24"), PortMin: 1, PortMax: 253}
	assert.Equal(t, "10.255.255.254", top.Addr(253).String())
}

func TestNames(t *testing.T) {
	assert.Equal(t, "ebb-ebb0", TableName("ebb0"))
	a, b := VethName("fn-00001-abc-1"), VethName("fn-00001-abc-2")
	assert.Len(t, a, 14)
	assert.True(t, strings.HasPrefix(a, "eb"))
	assert.True(t, isVethName(a))
	assert.NotEqual(t, a, b)
	assert.Equal(t, a, VethName("fn-00001-abc-1"), "stable across restarts")
	assert.NoError(t, validIfname(a))

	for _, name := range []string{"eb0123456789ab", "ebffffffffffff"} {
		assert.True(t, isVethName(name), name)
	}
	for _, name := range []string{"ebb0", "eb0123456789aB", "eb0123456789abc", "xb0123456789ab", "ebbtst12345678"} {
		assert.False(t, isVethName(name), name)
	}
}

func TestReplicaIDs(t *testing.T) {
	n, err := New(validConfig())
	require.NoError(t, err)
	for _, id := range []string{"", ".", "..", "a/b", "../x", "a\x00b", strings.Repeat("x", 256)} {
		assert.Error(t, validID(id), "%q", id)
		assert.Empty(t, n.NetnsPath(id), "%q", id)
		_, err := n.Prepare(t.Context(), id, 20000)
		assert.Error(t, err, "%q", id)
		assert.Error(t, n.Release(t.Context(), id), "%q", id)
	}
	for _, id := range []string{"fn-00001-abc-1", "x", strings.Repeat("x", 255)} {
		assert.NoError(t, validID(id), "%q", id)
	}
	_, err = n.Prepare(t.Context(), "fn-1", 19999)
	assert.ErrorContains(t, err, "outside")
}
