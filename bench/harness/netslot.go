package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/nodeagent/replicanet"
)

// Every ebbd the harness starts gets a netSlot of its own: a window of
// replica ports, a bridge and the replica range on it. ebbds of the harness
// may run side by side (the cold start section runs one with isolation on
// and one with it off), and the machine may also run a `make run` ebbd
// (ebb0, 10.213.0.0/18, ports 20000-29999) and e2e daemons (ebbt<w>,
// 10.214.<w>.0/24, ports 30000-32699): a slot shares nothing with any of
// them.
const (
	// netSlots is how many harness ebbds may run at once on the machine.
	netSlots = 8
	// slotPortBase and slotPortCount place slot k's replica ports at
	// 10000+1000k .. +999: below make run's and the e2e daemons' windows,
	// and below the kernel's ephemeral range (32768 and up by default), so
	// the harness's own free ports never land in one.
	slotPortBase  = 10000
	slotPortCount = 1000
	// netnsRoot is where ebbd keeps replica namespace files, per bridge.
	netnsRoot = "/run/ebb/netns"
	// slotLocks holds one lock file per slot (flock), so two harness runs
	// never share a slot either.
	slotLocks = "/run/ebb-bench"
)

// A netSlot is one harness ebbd's share of the node's networking.
type netSlot struct {
	index int
	lock  *os.File
}

// portMin and portMax are the slot's replica port window.
func (s netSlot) portMin() int { return slotPortBase + slotPortCount*s.index }
func (s netSlot) portMax() int { return s.portMin() + slotPortCount - 1 }

func (s netSlot) ports() string { return fmt.Sprintf("%d-%d", s.portMin(), s.portMax()) }

// bridge is "ebbb<k>": ebb0 is make run's and ebbt<w> the e2e daemons'.
func (s netSlot) bridge() string { return fmt.Sprintf("ebbb%d", s.index) }

// cidr is a /22 in 10.212.0.0/16: 1024 addresses hold the window's 1000
// replicas beside the network, gateway and broadcast addresses.
func (s netSlot) cidr() string { return fmt.Sprintf("10.212.%d.0/22", 4*s.index) }

func (s netSlot) netnsDir() string { return filepath.Join(netnsRoot, s.bridge()) }

// flags are ebbd's flags for the slot, also those `ebbd teardown-network`
// needs to find what the daemon made.
func (s netSlot) flags() []string {
	return []string{"--bridge", s.bridge(), "--replica-cidr", s.cidr(), "--replica-ports", s.ports()}
}

// config is the slot as replicanet sees it.
func (s netSlot) config() (replicanet.Config, error) {
	cidr, err := netip.ParsePrefix(s.cidr())
	if err != nil {
		return replicanet.Config{}, err
	}
	return replicanet.Config{Bridge: s.bridge(), CIDR: cidr, PortMin: s.portMin(), PortMax: s.portMax(), NetnsDir: s.netnsDir()}, nil
}

// lockNetSlot locks the lowest free slot. A slot whose network a killed
// run left behind is torn down first: the lock says no live ebbd uses it.
func lockNetSlot(ctx context.Context, ebbd string, log *slog.Logger) (netSlot, error) {
	if err := os.MkdirAll(slotLocks, 0o755); err != nil {
		return netSlot{}, fmt.Errorf("network slot: %w", err)
	}
	for i := 0; i < netSlots; i++ {
		f, err := os.OpenFile(filepath.Join(slotLocks, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return netSlot{}, fmt.Errorf("network slot: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		s := netSlot{index: i, lock: f}
		if left, err := replicanet.Leftovers(s.bridge(), s.netnsDir()); err != nil || len(left) > 0 {
			log.Warn("removing the replica network an earlier run left", "bridge", s.bridge(), "left", left, "err", err)
			if err := s.teardown(ctx, ebbd); err != nil {
				s.unlock()
				return netSlot{}, err
			}
		}
		return s, nil
	}
	return netSlot{}, fmt.Errorf("all %d network slots of the harness are in use (lock files in %s)", netSlots, slotLocks)
}

// teardown removes what the slot's ebbd left of its replica network once
// the daemon and its replicas are stopped, the way `make stop` does
// (ebbd teardown-network), and fails if anything is still there: no
// namespace, link, bridge or nftables table may outlive an ebbd of the
// harness.
func (s netSlot) teardown(ctx context.Context, ebbd string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ebbd, append([]string{"teardown-network"}, s.flags()...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ebbd teardown-network %s: %w: %s", strings.Join(s.flags(), " "), err, oneLine(string(out), 300))
	}
	left, err := replicanet.Leftovers(s.bridge(), s.netnsDir())
	if err != nil {
		return fmt.Errorf("look for what the replica network of %s left: %w", s.bridge(), err)
	}
	if len(left) > 0 {
		return fmt.Errorf("the replica network of %s left behind after ebbd teardown-network: %s", s.bridge(), strings.Join(left, ", "))
	}
	return nil
}

// unlock frees the slot for the next ebbd.
func (s netSlot) unlock() {
	if s.lock != nil {
		s.lock.Close()
	}
}

// errNetworkLeft marks a section's failure to clean up a replica network,
// which fails the whole run.
var errNetworkLeft = errors.New("replica network left behind")
