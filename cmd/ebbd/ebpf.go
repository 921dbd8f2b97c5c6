package main

import (
	"context"
	"fmt"
	"net/netip"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/nodeagent/bpfsync"
)

// ebpfState is this node's eBPF acceleration while ebbd runs.
type ebpfState struct {
	loader *bpf.Loader // nil when off
	// status is the node record's "ebpf" field: "on: ..." or "off: why".
	status string
}

// bpfOptions are the loader options the configuration asks for.
func (d *daemon) bpfOptions() bpf.Options {
	return bpf.Options{VIPPrefix: netip.MustParsePrefix(d.cfg.VIPPrefix)} // validated by Config.Validate
}

// loadEBPF applies --ebpf before the node agent starts, so its node record
// says whether the programs run. off loads nothing; auto loads them when
// the machine allows and otherwise says once, at info level, what is off
// and why; on fails the start when they cannot load. The programs are
// detached when ebbd stops, after every component that uses them.
func (d *daemon) loadEBPF() error {
	if d.cfg.EBPF == "off" {
		d.ebpf.status = "off: disabled by --ebpf off"
		return nil
	}
	l, err := bpf.Load(d.bpfOptions())
	if err != nil {
		if d.cfg.EBPF == "on" {
			return fmt.Errorf("--ebpf on: %w", err)
		}
		d.ebpf.status = bpf.OffStatus(err)
		d.log.Info("eBPF acceleration is off, using the userspace path (no socket redirection, function VIPs or wake-on-connect)",
			"reason", err.Error())
		return nil
	}
	d.ebpf = ebpfState{loader: l, status: l.Status()}
	d.closers = append(d.closers, func() {
		if err := l.Close(); err != nil {
			d.log.Warn("detach eBPF programs", "err", err)
		}
	})
	if err := d.reg.Register(bpfsync.NewStatsCollector(l)); err != nil {
		return fmt.Errorf("register eBPF metrics: %w", err)
	}
	d.log.Info("eBPF acceleration is on", "status", d.ebpf.status)
	return nil
}

// startEBPF keeps the loaded programs in line with the store and, when a
// router runs in this process (fns is set), serves the fallback listener
// that connects to cold VIPs land on. Without a router the fallback stays
// unset: a connect to a cold VIP is refused, after its wake event has
// asked scaler to start the function, so the caller's retry finds it warm.
// scaler also gets the load that reaches this node's replicas through VIPs;
// nil leaves wake events counted and VIP load unreported.
func (d *daemon) startEBPF(ctx context.Context, g *errgroup.Group, scaler scaleReporter, fns bpfsync.FunctionServer) error {
	l := d.ebpf.loader
	if l == nil {
		return nil
	}
	opts := d.bpfOptions()
	deps := bpfsync.Deps{
		Store:      d.store,
		Functions:  d.caches.Functions(),
		Endpoints:  d.caches.Endpoints(),
		VIPs:       d.caches.VIPs(),
		Ports:      d.caches.Ports(d.cfg.NodeName),
		Loader:     l,
		Activator:  scaler, // a nil interface converts to nil
		Stats:      scaler,
		Registerer: d.reg,
		Logger:     d.log.With("component", "ebpf"),
	}
	cfg := bpfsync.Config{
		Node:       d.cfg.NodeName,
		RouterPort: uint16(portOf(d.cfg.HTTPAddr)),
		VIPs:       opts,
	}
	var fbCfg bpfsync.FallbackConfig
	if d.network != nil {
		cfg.ReplicaCIDR = d.network.Config().CIDR
		cfg.PublishIP = d.network.Config().PublishIP
		cfg.ReplicaAddr = d.network.Addr
		// Replicas reach the fallback on the bridge: they cannot reach
		// the host's loopback, nor one another.
		fbCfg.ReplicaAddr = netip.AddrPortFrom(d.network.Config().Gateway(), 0).String()
	}
	syncer, err := bpfsync.New(cfg, deps)
	if err != nil {
		return err
	}
	if fns != nil {
		fb, err := bpfsync.NewFallback(fbCfg, bpfsync.FallbackDeps{
			Origins:    l,
			Targets:    l,
			Functions:  syncer,
			Server:     fns,
			Registerer: d.reg,
			Logger:     d.log.With("component", "ebpf-fallback"),
		})
		if err != nil {
			return err
		}
		if d.network != nil {
			// The policy lets replicas reach the listener's port on the
			// gateway, and nothing else of the host but the router.
			if err := d.network.Offer(ctx, fb.ReplicaAddr().Port()); err != nil {
				return err
			}
		}
		g.Go(func() error { return fb.Run(ctx) })
	}
	g.Go(func() error { return syncer.Run(ctx) })
	return nil
}

// nodeActivator is where a nodeagent-only process sends wake-on-connect
// activations and VIP load: the control plane's autoscaler, when
// --autoscaler-url is set.
func (d *daemon) nodeActivator() (scaleReporter, error) {
	if d.ebpf.loader == nil || d.cfg.AutoscalerURL == "" {
		if d.ebpf.loader != nil {
			d.log.Info("wake-on-connect only counts events and VIP load goes unreported: set --autoscaler-url to let VIP connects start and scale functions")
		}
		return nil, nil
	}
	return d.autoscalerClient()
}
