package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// UnavailableError says why the eBPF path cannot run on this machine. Every
// error Load returns for a missing capability, cgroup2 mount or kernel
// feature, or for a program the kernel refused, is one; callers run the
// userspace path instead and say why, for example with OffStatus.
type UnavailableError struct {
	// Reasons are short lowercase phrases, such as
	// "no CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN".
	Reasons []string
	// Err is the underlying error, if there was a single one.
	Err error
}

func (e *UnavailableError) Error() string {
	return "ebpf unavailable: " + strings.Join(e.Reasons, "; ")
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// OffStatus is the node status line for a machine where Load failed, the
// counterpart of (*Loader).Status.
func OffStatus(err error) string {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return "off: " + strings.Join(ue.Reasons, "; ")
	}
	return "off: " + err.Error()
}

// Probe checks, without loading or attaching anything, whether Load can
// work: the capabilities, the cgroup2 mount (or opts.CgroupPath), and the
// kernel's support for every program and map type. It returns nil or an
// *UnavailableError listing everything that is missing.
func Probe(opts Options) error {
	_, err := probe(opts)
	return err
}

// probe is Probe that also returns the resolved cgroup path.
func probe(opts Options) (string, error) {
	var reasons []string
	var first error
	add := func(reason string, err error) {
		reasons = append(reasons, reason)
		if first == nil {
			first = err
		}
	}

	if err := opts.Validate(); err != nil {
		add(err.Error(), err)
	}

	capsOK := true
	if missing, err := missingCaps(); err != nil {
		add(fmt.Sprintf("read capabilities: %v", err), err)
		capsOK = false
	} else if missing != "" {
		add(missing, nil)
		capsOK = false
	}

	cg := opts.CgroupPath
	if cg == "" {
		var err error
		if cg, err = FindCgroup2(); err != nil {
			add(err.Error(), err)
		}
	}
	if cg != "" {
		if err := checkCgroup2(cg); err != nil {
			add(err.Error(), err)
		}
	}

	// Feature probes create programs and maps, so without the
	// capabilities they would only repeat the reason above.
	if capsOK {
		for _, pt := range []ebpf.ProgramType{ebpf.SockOps, ebpf.SkMsg, ebpf.CGroupSockAddr} {
			if err := features.HaveProgramType(pt); err != nil {
				add(fmt.Sprintf("kernel lacks %s programs: %v", pt, err), err)
			}
		}
		for _, mt := range []ebpf.MapType{ebpf.SockHash, ebpf.SkStorage, ebpf.RingBuf, ebpf.HashOfMaps, ebpf.LRUHash} {
			if err := features.HaveMapType(mt); err != nil {
				add(fmt.Sprintf("kernel lacks %s maps: %v", mt, err), err)
			}
		}
	}

	if len(reasons) == 0 {
		return cg, nil
	}
	ue := &UnavailableError{Reasons: reasons}
	if len(reasons) == 1 {
		ue.Err = first
	}
	return cg, ue
}

// missingCaps names the capabilities the process lacks, or returns "".
// Loading sockops and cgroup programs and attaching them needs CAP_BPF and
// CAP_NET_ADMIN, or CAP_SYS_ADMIN, which implies both.
func missingCaps() (string, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "", err
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_NET_ADMIN)) {
		return "", nil
	}
	return "no CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN", nil
}
