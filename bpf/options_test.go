package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "zero value is the defaults", opts: Options{}},
		{name: "other loopback range", opts: Options{VIPPrefix: netip.MustParsePrefix("127.200.0.0/24")}},
		{name: "ipv6", opts: Options{VIPPrefix: netip.MustParsePrefix("fd00::/64")}, wantErr: "must be IPv4"},
		{name: "not loopback", opts: Options{VIPPrefix: netip.MustParsePrefix("10.77.0.0/16")}, wantErr: "must lie in 127.0.0.0/8"},
		{name: "wider than loopback", opts: Options{VIPPrefix: netip.MustParsePrefix("0.0.0.0/0")}, wantErr: "must lie in 127.0.0.0/8"},
		{name: "host bits", opts: Options{VIPPrefix: netip.MustParsePrefix("127.77.0.1/16")}, wantErr: "host bits set"},
		{name: "too small", opts: Options{VIPPrefix: netip.MustParsePrefix("127.77.0.1/32")}, wantErr: "too small"},
		{name: "ring not power of two", opts: Options{WakeBufferBytes: 5000}, wantErr: "power of two"},
		{name: "ring too small", opts: Options{WakeBufferBytes: 1024}, wantErr: "power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	assert.Equal(t, netip.MustParsePrefix("127.77.0.0/16"), o.VIPPrefix)
	assert.Equal(t, uint16(80), o.VIPPort)
	assert.Equal(t, uint32(16384), o.MaxVIPs)
	assert.Equal(t, uint32(65536), o.MaxSockets)
	assert.Equal(t, uint32(256*1024), o.WakeBufferBytes)
	assert.Equal(t, 100*time.Millisecond, o.CloseGrace)
	assert.Equal(t, -time.Second, Options{CloseGrace: -time.Second}.withDefaults().CloseGrace)
	assert.Empty(t, o.CgroupPath, "resolved only by Load")
}

func TestVIPFor(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		n       uint32
		want    string
		wantErr string
	}{
		{name: "first", n: 0, want: "127.77.0.1:80"},
		{name: "crosses a byte", n: 255, want: "127.77.1.0:80"},
		{name: "last of /16", n: 65533, want: "127.77.255.254:80"},
		{name: "past the end", n: 65534, wantErr: "holds 65534"},
		{name: "custom", opts: Options{VIPPrefix: netip.MustParsePrefix("127.9.9.0/30"), VIPPort: 8080}, n: 1, want: "127.9.9.2:8080"},
		{name: "custom full", opts: Options{VIPPrefix: netip.MustParsePrefix("127.9.9.0/30")}, n: 2, wantErr: "holds 2"},
		{name: "invalid options", opts: Options{VIPPrefix: netip.MustParsePrefix("10.0.0.0/8")}, wantErr: "127.0.0.0/8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.VIPFor(tt.n)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.String())
		})
	}
}

func TestFillSlots(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1001")
	b := netip.MustParseAddrPort("127.0.0.1:1002")
	c := netip.MustParseAddrPort("127.0.0.1:1003")
	many := make([]Backend, VIPSlots+1)
	for i := range many {
		many[i] = Backend{Addr: netip.AddrPortFrom(a.Addr(), uint16(2000+i)), Weight: 1}
	}
	tests := []struct {
		name     string
		backends []Backend
		want     map[netip.AddrPort]int // slots per backend; nil means cold
		wantErr  string
	}{
		{name: "none is cold", backends: nil},
		{name: "all zero weight is cold", backends: []Backend{{Addr: a}, {Addr: b}}},
		{name: "one takes all", backends: []Backend{{Addr: a, Weight: 1}}, want: map[netip.AddrPort]int{a: 100}},
		{name: "percent split", backends: []Backend{{Addr: a, Weight: 90}, {Addr: b, Weight: 10}}, want: map[netip.AddrPort]int{a: 90, b: 10}},
		{name: "zero weight gets nothing", backends: []Backend{{Addr: a, Weight: 5}, {Addr: b, Weight: 0}}, want: map[netip.AddrPort]int{a: 100}},
		{name: "thirds by largest remainder", backends: []Backend{{Addr: a, Weight: 1}, {Addr: b, Weight: 1}, {Addr: c, Weight: 1}}, want: map[netip.AddrPort]int{a: 34, b: 33, c: 33}},
		{name: "tiny share still gets a slot", backends: []Backend{{Addr: a, Weight: 1000}, {Addr: b, Weight: 1}}, want: map[netip.AddrPort]int{a: 99, b: 1}},
		{name: "too many", backends: many, wantErr: "at most 100"},
		{name: "ipv6 backend", backends: []Backend{{Addr: netip.MustParseAddrPort("[::1]:80"), Weight: 1}}, wantErr: "IPv4"},
		{name: "no port", backends: []Backend{{Addr: netip.AddrPortFrom(a.Addr(), 0), Weight: 1}}, wantErr: "IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fillSlots(tt.backends)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			if tt.want == nil {
				assert.Nil(t, got)
				return
			}
			require.Len(t, got, VIPSlots)
			counts := map[netip.AddrPort]int{}
			for _, s := range got {
				counts[s]++
			}
			assert.Equal(t, tt.want, counts)
		})
	}
}

func TestParseCgroup2Mount(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{
			name: "hybrid",
			in: `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`,
			want: "/sys/fs/cgroup/unified",
		},
		{
			name: "unified with optional fields",
			in:   "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
			want: "/sys/fs/cgroup",
		},
		{
			name: "escaped space",
			in:   `50 1 0:40 / /mnt/my\040cgroup rw - cgroup2 none rw` + "\n",
			want: "/mnt/my cgroup",
		},
		{
			name:    "v1 only",
			in:      "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
			wantErr: errNoCgroup2,
		},
		{name: "empty", in: "", wantErr: errNoCgroup2},
		{name: "garbage lines are skipped", in: "nonsense\n- cgroup2\n40 30 0:37 / /cg rw - cgroup2 cgroup2 rw\n", want: "/cg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCgroup2Mount(strings.NewReader(tt.in))
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestAddr4RoundTrip(t *testing.T) {
	for _, s := range []string{"127.0.0.1:80", "127.77.1.2:8080", "10.1.2.3:65535"} {
		ap := netip.MustParseAddrPort(s)
		enc := toAddr4(ap)
		assert.Equal(t, ap.Port(), enc.Port, "ports are stored in host byte order")
		assert.Equal(t, ap, fromAddr4(enc))
	}
}

func TestDecodeWakeEvent(t *testing.T) {
	raw := []byte{
		0x10, 0x27, 0, 0, 0, 0, 0, 0, // ktime 10000 ns
		0x2a, 0, 0, 0, 0, 0, 0, 0, // cookie 42
		7, 0, 0, 0, // function id 7
		0xe8, 0x03, 0, 0, // pid 1000
		127, 77, 0, 9, // vip address, network byte order
		80, 0, // port 80, host byte order
		0, 0,
	}
	ev, err := decodeWakeEvent(raw)
	require.NoError(t, err)
	assert.Equal(t, WakeEvent{
		FunctionID: 7,
		VIP:        netip.MustParseAddrPort("127.77.0.9:80"),
		PID:        1000,
		Cookie:     42,
		KernelTime: 10 * time.Microsecond,
	}, ev)

	_, err = decodeWakeEvent(raw[:20])
	assert.Error(t, err)
}

func TestOffStatus(t *testing.T) {
	ue := &UnavailableError{Reasons: []string{"no CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN", "no cgroup2 mount in /proc/self/mountinfo"}}
	assert.Equal(t, "off: no CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN; no cgroup2 mount in /proc/self/mountinfo", OffStatus(ue))
	assert.Equal(t, "off: boom", OffStatus(errors.New("boom")))
	assert.Equal(t, "ebpf unavailable: a; b", (&UnavailableError{Reasons: []string{"a", "b"}}).Error())
	inner := errors.New("inner")
	assert.ErrorIs(t, &UnavailableError{Reasons: []string{"x"}, Err: inner}, inner)
}

// The Go side hard-codes a few facts about ebb.c; check them against the
// compiled object so that a change to one side cannot go unnoticed.
func TestObjectMatchesGo(t *testing.T) {
	spec, err := loadEbb()
	require.NoError(t, err)
	outer := spec.Maps[ebbMapVipBackends]
	require.NotNil(t, outer)
	require.NotNil(t, outer.InnerMap)
	assert.Equal(t, uint32(VIPSlots), outer.InnerMap.MaxEntries, "VIP_SLOTS in ebb.c")
	assert.Equal(t, wakeEventSize, binary.Size(ebbWakeEvent{}), "sizeof(struct wake_event)")
	assert.Equal(t, int(ebbStatSTAT_MAX), int(spec.Maps[ebbMapStats].MaxEntries))
	for _, name := range []string{ebbProgEbbSockops, ebbProgEbbSkMsg, ebbProgEbbConnect4, ebbProgEbbPeername4} {
		assert.Contains(t, spec.Programs, name)
	}
}
