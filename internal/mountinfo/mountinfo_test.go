package mountinfo

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAndUnder(t *testing.T) {
	const listing = `22 1 0:21 / /sys rw - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 1 0:40 / /tmp/work rw - tmpfs tmpfs rw
41 40 0:41 / /tmp/work/c/rootfs rw - overlay overlay rw
42 40 0:42 / /tmp/work/a\040b rw - tmpfs tmpfs rw
43 1 0:43 / /tmp/work2 rw - tmpfs tmpfs rw
not a mount line
`
	mounts, err := Parse(strings.NewReader(listing))
	require.NoError(t, err)
	require.Len(t, mounts, 6)
	assert.Equal(t, Mount{Point: "/sys/fs/cgroup/unified", FSType: "cgroup2"}, mounts[1])
	assert.Equal(t, "/tmp/work/a b", mounts[4].Point, "octal escapes are undone")
	assert.Equal(t, []string{"/tmp/work/a b", "/tmp/work/c/rootfs", "/tmp/work"}, Under(mounts, "/tmp/work"),
		"at or below, latest first; a sibling with the same prefix is not below")
}

func TestUnescape(t *testing.T) {
	tests := map[string]string{
		`/tmp/a`:         "/tmp/a",
		`/tmp/a\040b`:    "/tmp/a b",
		`/tmp/a\134b`:    `/tmp/a\b`,
		`/tmp/trailing\`: `/tmp/trailing\`,
	}
	for in, want := range tests {
		assert.Equal(t, want, unescape(in), in)
	}
}
