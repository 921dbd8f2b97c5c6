package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Mount is one line of the table.
type Mount struct {
	// Point is where it is mounted, unescaped.
	Point string
	// FSType is the file system type, such as cgroup2 or overlay.
	FSType string
}

// Read parses /proc/self/mountinfo.
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads a mountinfo listing, in mount order. Lines it cannot read
// are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, Mount{Point: unescape(fields[4]), FSType: fields[sep+1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// Under returns the mount points at or below dir, the latest mounted
// first, so that unmounting them in order takes children before parents.
func Under(mounts []Mount, dir string) []string {
	var out []string
	for i := len(mounts) - 1; i >= 0; i-- {
		if p := mounts[i].Point; p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// UnmountUnder detaches every mount at or below dir, children first, so
// that dir can be removed; what it cannot read or unmount it leaves.
func UnmountUnder(dir string) {
	mounts, _ := Read()
	for _, m := range Under(mounts, dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// RemoveEmptyCgroup removes the cgroup at path (relative to each
// hierarchy's root, such as "ebb" or "ebb/fn-00001-abc") from every cgroup
// hierarchy mounted, v1 and v2, where it exists and is empty. rmdir fails
// on a cgroup in use, so a live one is never touched. It is for the
// cgroups runc leaves behind: a containerd namespace's parent, or a
// container whose create was cut short.
func RemoveEmptyCgroup(path string) {
	mounts, _ := Read()
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			_ = syscall.Rmdir(filepath.Join(m.Point, path))
		}
	}
}

// unescape undoes the octal escapes (\040 for space and so on) that the
// kernel writes for unusual characters in mount points.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
