package containerd

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	cfs "github.com/containerd/continuity/fs"

	"github.com/ebbrun/ebb/nodeagent"
)

// checkExecutable does, inside the image's root filesystem at root, what
// the kernel and runc will do with argv0 (look it up in PATH, open it, exec
// it) and explains in a sentence why that would fail. It catches a bad image
// before any container exists, and the exec format error that runc would
// otherwise report only as a process exiting at once.
func checkExecutable(root, argv0, pathEnv string) error {
	if argv0 == "" {
		return badImage("the entrypoint is empty")
	}
	p := argv0
	if !strings.Contains(argv0, "/") {
		var ok bool
		if p, ok = lookPath(root, argv0, pathEnv); !ok {
			return badImage("entrypoint %q is not an executable in the image's PATH (%s)", argv0, pathEnv)
		}
	} else if !path.IsAbs(p) {
		p = path.Join("/", p)
	}
	return checkFile(root, p, "entrypoint", 0)
}

func lookPath(root, name, pathEnv string) (string, bool) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue
		}
		p := path.Join("/", dir, name)
		host, err := cfs.RootPath(root, p)
		if err != nil {
			continue
		}
		if st, err := os.Stat(host); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

func checkFile(root, p, what string, depth int) error {
	host, err := cfs.RootPath(root, p)
	if err != nil {
		return badImage("%s %s cannot be resolved in the image: %v", what, p, err)
	}
	st, err := os.Stat(host)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return badImage("%s %s does not exist in the image", what, p)
	case err != nil:
		return badImage("%s %s: %v", what, p, err)
	case st.IsDir():
		return badImage("%s %s is a directory", what, p)
	case !st.Mode().IsRegular():
		return badImage("%s %s is not a regular file", what, p)
	case st.Mode().Perm()&0o111 == 0:
		return badImage("%s %s is not executable (mode %04o)", what, p, st.Mode().Perm())
	}
	f, err := os.Open(host)
	if err != nil {
		return badImage("%s %s cannot be opened: %v", what, p, err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return badImage("%s %s cannot be read: %v", what, p, err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return checkELF(root, f, p, what)
	case bytes.HasPrefix(head, []byte("#!")):
		if depth > 0 {
			return badImage("%s %s is a script whose interpreter is a script too", what, p)
		}
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return badImage("exec format error: %s %s starts with #! but names no interpreter", what, p)
		}
		return checkFile(root, fields[0], "script interpreter", depth+1)
	}
	return badImage("exec format error: %s %s is neither an ELF executable nor a script starting with #!", what, p)
}

func checkELF(root string, f *os.File, p, what string) error {
	ef, err := elf.NewFile(f)
	if err != nil {
		return badImage("exec format error: %s %s is a damaged ELF file: %v", what, p, err)
	}
	if want, ok := machines[runtime.GOARCH]; ok && ef.Machine != want {
		return badImage("exec format error: %s %s is built for %s, this node is %s", what, p, machineName(ef.Machine), runtime.GOARCH)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return badImage("exec format error: %s %s is an ELF %s, not an executable", what, p, ef.Type)
	}
	for _, prog := range ef.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(prog.Open())
		if err != nil {
			return badImage("%s %s has an unreadable interpreter entry: %v", what, p, err)
		}
		interp := string(bytes.TrimRight(b, "\x00"))
		host, err := cfs.RootPath(root, interp)
		if err == nil {
			if _, err = os.Stat(host); err == nil {
				return nil
			}
		}
		return badImage("%s %s is dynamically linked and needs %s, which the image does not have (build it static, for Go with CGO_ENABLED=0)", what, p, interp)
	}
	return nil
}

// machines maps GOARCH to the ELF machine the node executes.
var machines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"riscv64": elf.EM_RISCV,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"loong64": elf.EM_LOONGARCH,
}

func machineName(m elf.Machine) string {
	for arch, mm := range machines {
		if mm == m {
			return arch
		}
	}
	return strings.TrimPrefix(m.String(), "EM_")
}

func badImage(format string, args ...any) error {
	return fmt.Errorf("%w: %s", nodeagent.ErrBadImage, fmt.Sprintf(format, args...))
}

// pathOf returns the PATH in env.
func pathOf(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return ""
}
