package containerd

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/nodeagent"
)

// fakeELF is a minimal ELF64 header for machine, enough for debug/elf.
func fakeELF(t *testing.T, machine elf.Machine) []byte {
	t.Helper()
	var b bytes.Buffer
	h := elf.Header64{
		Ident:     [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Ehsize:    64,
		Phentsize: 56,
		Shentsize: 64,
	}
	require.NoError(t, binary.Write(&b, binary.LittleEndian, h))
	return b.Bytes()
}

func TestCheckExecutable(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the table assumes an amd64 or arm64 node")
	}
	native, foreign, foreignName := elf.EM_X86_64, elf.EM_AARCH64, "arm64"
	if runtime.GOARCH == "arm64" {
		native, foreign, foreignName = elf.EM_AARCH64, elf.EM_X86_64, "amd64"
	}
	hostTrue, err := os.ReadFile("/bin/true") // dynamically linked on Debian
	require.NoError(t, err)

	root := t.TempDir()
	write := func(p string, data []byte, mode os.FileMode) {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, data, mode))
	}
	write("/app/good", fakeELF(t, native), 0o755)
	write("/app/foreign", fakeELF(t, foreign), 0o755)
	write("/app/text", []byte("hello, not a program\n"), 0o755)
	write("/app/noexec", fakeELF(t, native), 0o644)
	write("/app/script", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write("/app/pyscript", []byte("#!/usr/bin/python3\nprint(1)\n"), 0o755)
	write("/app/dynamic", hostTrue, 0o755)
	write("/bin/sh", fakeELF(t, native), 0o755)
	write("/usr/bin/tool", fakeELF(t, native), 0o755)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "/app/dir"), 0o755))
	require.NoError(t, os.Symlink("/app/good", filepath.Join(root, "/app/link")))
	require.NoError(t, os.Symlink("../../../../../app/good", filepath.Join(root, "/app/escape")))

	tests := []struct {
		name    string
		argv0   string
		path    string
		wantErr string
	}{
		{name: "static binary", argv0: "/app/good"},
		{name: "symlink inside the image", argv0: "/app/link"},
		{name: "symlink escaping the root resolves inside it", argv0: "/app/escape"},
		{name: "found in PATH", argv0: "tool", path: "/nope:/usr/bin"},
		{name: "script with its interpreter", argv0: "/app/script"},
		{name: "missing", argv0: "/app/nope", wantErr: "entrypoint /app/nope does not exist in the image"},
		{name: "not in PATH", argv0: "nope", path: "/bin:/usr/bin", wantErr: `entrypoint "nope" is not an executable in the image's PATH (/bin:/usr/bin)`},
		{name: "directory", argv0: "/app/dir", wantErr: "entrypoint /app/dir is a directory"},
		{name: "not executable", argv0: "/app/noexec", wantErr: "entrypoint /app/noexec is not executable (mode 0644)"},
		{name: "text file", argv0: "/app/text", wantErr: "exec format error: entrypoint /app/text is neither an ELF executable nor a script starting with #!"},
		{name: "foreign architecture", argv0: "/app/foreign", wantErr: "exec format error: entrypoint /app/foreign is built for " + foreignName + ", this node is " + runtime.GOARCH},
		{name: "script without its interpreter", argv0: "/app/pyscript", wantErr: "script interpreter /usr/bin/python3 does not exist in the image"},
		{name: "dynamic without its loader", argv0: "/app/dynamic", wantErr: "is dynamically linked and needs /lib"},
		{name: "empty", argv0: "", wantErr: "the entrypoint is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkExecutable(root, tt.argv0, tt.path)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, nodeagent.ErrBadImage))
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	require.NoError(t, c.Validate())
	assert.Equal(t, "ebb", c.Namespace)

	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "ebb-runc", cfg: Config{RuncBinary: "/usr/local/bin/ebb-runc"}},
		{name: "relative fifo dir", cfg: Config{FIFODir: "relative"}, wantErr: "must be absolute"},
		{name: "bad namespace", cfg: Config{Namespace: "a/b"}, wantErr: "not a containerd namespace"},
		{name: "relative runc binary", cfg: Config{RuncBinary: "ebb-runc"}, wantErr: "must be an absolute path"},
		{name: "runc binary on another shim", cfg: Config{RuncBinary: "/bin/ebb-runc", Runtime: "io.containerd.runsc.v1"}, wantErr: "needs runtime io.containerd.runc.v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}
