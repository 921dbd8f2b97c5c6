package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/nodeagent/idrange"
	"github.com/ebbrun/ebb/nodeagent/replicanet"
)

// Values of --isolation.
const (
	isolationOn  = "on"
	isolationOff = "off"
)

// netnsRoot holds each bridge's replica network namespace files, on the
// tmpfs of /run: a namespace does not outlive a reboot, nor should its file.
const netnsRoot = "/run/ebb/netns"

// validateIsolation checks --isolation, --bridge and --replica-cidr.
func (c Config) validateIsolation() error {
	switch c.Isolation {
	case isolationOn:
	case isolationOff:
		return nil
	default:
		return fmt.Errorf("--isolation %q: must be on or off", c.Isolation)
	}
	_, err := c.networkConfig()
	return err
}

// networkConfig is the replica network --bridge and --replica-cidr ask
// for, without its run-time parts (registry, logger, offered ports).
func (c Config) networkConfig() (replicanet.Config, error) {
	cidr, err := netip.ParsePrefix(c.ReplicaCIDR)
	if err != nil {
		return replicanet.Config{}, fmt.Errorf("--replica-cidr %q: must be an IPv4 prefix such as 10.213.0.0/18", c.ReplicaCIDR)
	}
	lo, hi, err := c.replicaPortRange()
	if err != nil {
		return replicanet.Config{}, err
	}
	cfg := replicanet.Config{
		Bridge:   c.Bridge,
		CIDR:     cidr,
		PortMin:  lo,
		PortMax:  hi,
		NetnsDir: filepath.Join(netnsRoot, c.Bridge),
	}
	if err := cfg.Validate(); err != nil {
		return replicanet.Config{}, fmt.Errorf("--bridge %s, --replica-cidr %s, --replica-ports %s: %w", c.Bridge, c.ReplicaCIDR, c.ReplicaPorts, err)
	}
	return cfg, nil
}

// setupNetwork applies --isolation before the node agent starts: on makes
// the node bridge and its policy (replicanet), which replicas' namespaces
// hang off; off says once that replicas share the host's network.
func (d *daemon) setupNetwork(ctx context.Context) error {
	if d.cfg.Isolation == isolationOff {
		d.log.Warn("isolation is off (--isolation off): replicas share the host's network and user namespaces, and can reach everything on it")
		return nil
	}
	cfg, err := d.cfg.networkConfig()
	if err != nil {
		return err
	}
	cfg.Log = d.log.With("component", "replicanet")
	// Other hosts reach a replica at --host-ip:port, translated to its
	// address on the bridge; on one machine (loopback) routers dial the
	// bridge address itself, as before.
	cfg.PublishIP = nodeagent.PublishIP(d.cfg.HostIP)
	if d.cfg.Role == RoleAll {
		// Replicas may call functions through the router on the node.
		cfg.OfferedPorts = append(cfg.OfferedPorts, uint16(portOf(d.cfg.HTTPAddr)))
	}
	if d.ebpf.loader != nil {
		cfg.Registry = d.ebpf.loader
	}
	n, err := replicanet.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Setup(ctx); err != nil {
		return fmt.Errorf("replica isolation needs root and nftables support (or run with --isolation off): %w", err)
	}
	d.network = n
	// runc, as the mapped root of a replica's user namespace, must pass
	// through the data dir to reach the bundles of a private containerd
	// under it. Search only: the dir still cannot be listed, and what it
	// holds keeps its own modes (the token and keys are 0600).
	if err := os.Chmod(d.cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	d.users, err = openUserRanges(filepath.Join(d.cfg.DataDir, "nodeagent", "idranges.json"))
	if err != nil {
		return err
	}
	return nil
}

// userRanges adapts idrange's allocator to the node agent: one range of
// host ids per tenancy namespace, kept in the node agent's data dir.
type userRanges struct{ alloc *idrange.Allocator }

func openUserRanges(path string) (*userRanges, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("user namespaces: %w", err)
	}
	alloc, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, idrange.DefaultCount)
	if err != nil {
		return nil, fmt.Errorf("user namespaces: %w", err)
	}
	return &userRanges{alloc: alloc}, nil
}

func (u *userRanges) For(namespace string) (nodeagent.IDMap, error) {
	r, err := u.alloc.For(namespace)
	if err != nil {
		return nodeagent.IDMap{}, err
	}
	return nodeagent.IDMap{HostID: r.HostID, Size: r.Size}, nil
}

// teardownNetwork is `ebbd teardown-network [flags]`: it removes what
// isolation left on the node (replica namespaces, their links, the bridge
// and its nftables table) once ebbd and its replicas are stopped, as `make
// stop` does.
func teardownNetwork(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	ncfg, err := cfg.networkConfig()
	if err != nil {
		return err
	}
	n, err := replicanet.New(ncfg)
	if err != nil {
		return err
	}
	if err := n.Teardown(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "removed the replica network of bridge %s\n", ncfg.Bridge)
	return nil
}
