// Command probe reports, as JSON on stdout, what a replica sees of its own
// isolation: its ids and their mapping, its capabilities, whether it can
// write its root filesystem, read masked paths, mount a sysfs or read its
// secrets, and waits for SIGTERM. The containerd runtime's tests run it
// as a replica and check the report.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Report is what the probe found.
type Report struct {
	UID, GID   int
	UIDMap     string
	GIDMap     string
	Netns      string            // the link /proc/self/ns/net, net:[inode]
	Status     map[string]string // CapEff, CapPrm, CapBnd, CapAmb, CapInh, NoNewPrivs, Seccomp
	RootWrite  string            // error of creating a file in /, "" if it could
	TmpWrite   string            // error of creating a file in /tmp
	Kcore      string            // error of opening /proc/kcore, or how much a read got
	Mounts     map[string]string // mount point → its options, from /proc/self/mountinfo
	ProcSysW   string            // error of writing /proc/sys/kernel/hostname
	Sys        []string          // names in /sys
	SysErr     string
	Secret     string // content of /run/secrets/token, or the error
	Mount      string // error of mounting a tmpfs
	PacketSock string // error of opening an AF_PACKET socket
}

func main() {
	r := Report{UID: os.Getuid(), GID: os.Getgid(), Status: map[string]string{}}
	r.UIDMap = readString("/proc/self/uid_map")
	r.GIDMap = readString("/proc/self/gid_map")
	if l, err := os.Readlink("/proc/self/ns/net"); err != nil {
		r.Netns = "error: " + err.Error()
	} else {
		r.Netns = l
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp") {
				r.Status[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	r.RootWrite = errString(os.WriteFile("/probe-write", []byte("x"), 0o644))
	r.TmpWrite = errString(os.WriteFile("/tmp/probe-write", []byte("x"), 0o644))
	if f, err := os.Open("/proc/kcore"); err != nil {
		r.Kcore = err.Error()
	} else {
		n, err := f.Read(make([]byte, 4096))
		r.Kcore = fmt.Sprintf("read %d bytes (%v)", n, err)
		f.Close()
	}
	r.Mounts = map[string]string{}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 5 {
				r.Mounts[fields[4]] = fields[5]
			}
		}
		f.Close()
	}
	r.ProcSysW = errString(os.WriteFile("/proc/sys/kernel/hostname", []byte("probe"), 0o644))
	if es, err := os.ReadDir("/sys"); err != nil {
		r.SysErr = err.Error()
	} else {
		for _, e := range es {
			r.Sys = append(r.Sys, e.Name())
		}
	}
	r.Secret = readString("/run/secrets/token")
	r.Mount = errString(syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	if fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0x0300); err != nil {
		r.PacketSock = err.Error()
	} else {
		syscall.Close(fd)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(1)
	}
	// Live on until told to stop, as a replica does, so that its start
	// can be checked as well.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	<-stop
}

func readString(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
