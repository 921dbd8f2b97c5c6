package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the nodes: heartbeat, capacity, running replicas, warm pool and eBPF",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := c.ListNodes(cmd.Context())
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
			if a.structured() {
				if nodes == nil {
					nodes = []api.Node{}
				}
				return a.writeOut(map[string][]api.Node{"nodes": nodes})
			}
			if len(nodes) == 0 {
				_, err := fmt.Fprintln(a.stdout, "no nodes have reported yet")
				return err
			}
			return printNodes(a.stdout, nodes, a.now())
		},
	}
}

// staleAfter is how many heartbeat intervals may pass before a node shows
// as NotReady.
const staleAfter = 3

func printNodes(w io.Writer, nodes []api.Node, now time.Time) error {
	t := newTable(w, "NODE", "STATUS", "CPU", "MEMORY", "RUNNING", "POOL", "POOL-MEMORY", "EBPF", "HEARTBEAT")
	for _, n := range nodes {
		status := "Ready"
		if iv := n.HeartbeatInterval.Duration; n.Heartbeat.IsZero() || (iv > 0 && now.Sub(n.Heartbeat) > staleAfter*iv) {
			status = "NotReady"
		}
		heartbeat := "-"
		if !n.Heartbeat.IsZero() {
			heartbeat = age(now, n.Heartbeat) + " ago"
		}
		t.row(n.Name, status,
			fmt.Sprintf("%g/%g", n.AllocatedCPU, n.CPU),
			bytesIEC(n.AllocatedMemory)+"/"+bytesIEC(n.MemoryBytes),
			fmt.Sprint(n.Running),
			fmt.Sprintf("%d/%d", n.PoolSize, n.PoolCapacity),
			bytesIEC(n.PoolMemoryBytes)+"/"+bytesIEC(n.PoolMemoryBudget),
			n.EBPF, heartbeat)
	}
	return t.flush()
}
