package replicanet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/ebbrun/ebb/internal/mountinfo"
)

// Leftovers lists what Teardown of bridge and netnsDir would remove: netns
// files and mounts under netnsDir, replica veths on the bridge (or on no
// bridge), the bridge and its nftables table. Tests and e2e checks assert it
// is empty after a run.
func Leftovers(bridge, netnsDir string) ([]string, error) {
	var out []string
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	for _, e := range entries {
		out = append(out, "netns file "+filepath.Join(netnsDir, e.Name()))
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	for _, m := range mountinfo.Under(mounts, netnsDir) {
		out = append(out, "mount "+m)
	}
	veths, err := replicaVeths(bridge)
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	for _, v := range veths {
		out = append(out, "veth "+v)
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		out = append(out, "bridge "+bridge)
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("leftovers: look up %s: %w", bridge, err)
	}
	ok, err := tableExists(bridge)
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	if ok {
		out = append(out, "nft table inet "+TableName(bridge))
	}
	sort.Strings(out)
	return out, nil
}
