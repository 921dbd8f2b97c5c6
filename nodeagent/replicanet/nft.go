package replicanet

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// installTable replaces the table of cfg.Bridge in one batch: add (a no-op
// if it exists), delete, add with its chains and rules. The kernel applies a
// batch all or nothing, so the old policy holds until the new one does.
// published holds the elements of the published map (port -> replica
// address) when cfg.PublishIP is set.
func installTable(cfg Config, published map[uint16]netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(cfg.Bridge)}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	var set *nftables.Set
	if cfg.PublishIP.IsValid() {
		set = publishedSet(t)
		if err := c.AddSet(set, publishedElements(published)); err != nil {
			return fmt.Errorf("published map: %w", err)
		}
	}
	for _, ch := range chains(t, cfg, set) {
		c.AddChain(ch.chain)
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch.chain, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", t.Name, err)
	}
	return nil
}

// deleteTable removes the table of bridge; a missing one is fine (the batch
// adds it first, which is a no-op when it exists).
func deleteTable(bridge string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(bridge)}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", t.Name, err)
	}
	return nil
}

// PublishedMap is the nftables map (in the bridge's table) of the replicas
// published at Config.PublishIP: TCP port -> the replica's bridge address.
const PublishedMap = "published"

func publishedSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: PublishedMap, IsMap: true,
		KeyType: nftables.TypeInetService, DataType: nftables.TypeIPAddr}
}

func publishedElements(published map[uint16]netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(published))
	for port, addr := range published {
		a := addr.As4()
		out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(port), Val: a[:]})
	}
	return out
}

// setPublished adds (addr valid) or removes port's element of the published
// map in one batch.
func setPublished(bridge string, port uint16, addr netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(bridge)}
	set := publishedSet(t)
	if addr.IsValid() {
		err = c.SetAddElements(set, publishedElements(map[uint16]netip.Addr{port: addr}))
	} else {
		err = c.SetDeleteElements(set, []nftables.SetElement{{Key: binaryutil.BigEndian.PutUint16(port)}})
	}
	if err == nil {
		err = c.Flush()
	}
	if err != nil {
		return fmt.Errorf("published map, port %d -> %v: %w", port, addr, err)
	}
	return nil
}

// publishedPorts reads the ports of bridge's published map as the kernel
// holds it; none if there is no table or map.
func publishedPorts(bridge string) ([]uint16, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	exists, err := tableExists(bridge)
	if err != nil || !exists {
		return nil, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(bridge)}
	set, err := c.GetSetByName(t, PublishedMap)
	if err != nil {
		return nil, nil // a table of a node that did not publish
	}
	elems, err := c.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("read published map: %w", err)
	}
	var out []uint16
	for _, e := range elems {
		if len(e.Key) == 2 {
			out = append(out, binaryutil.BigEndian.Uint16(e.Key))
		}
	}
	return out, nil
}

type chainRules struct {
	chain *nftables.Chain
	rules [][]expr.Any
}

// chains is the policy of ISOLATION.md:
//
//	input:       iifname br ct state established,related accept
//	             iifname br ip daddr gw tcp dport {offered} accept
//	             iifname br drop
//	forward:     oifname br ct state established,related accept
//	             oifname br drop
//	             (out of the bridge: the policy accepts)
//	postrouting: ip saddr cidr oifname != br masquerade
//
// and, with cfg.PublishIP set (set is the published map):
//
//	prerouting:  iifname != br ip daddr publishIP tcp dport @published dnat to tcp dport map @published
//	output:      ip daddr publishIP tcp dport @published dnat to tcp dport map @published
//	forward:     iifname br oifname != br ct state new tcp dport portMin-portMax drop
//	             (before the drop) iifname != br oifname br ct status dnat accept
//
// The prerouting rule ignores the bridge, so a replica cannot reach another
// through the node's published address; the forward rule admits only the
// connections a published rule translated, from outside the bridge.
func chains(t *nftables.Table, cfg Config, set *nftables.Set) []chainRules {
	accept := nftables.ChainPolicyAccept
	br := cfg.Bridge
	input := chainRules{chain: &nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}}
	input.rules = append(input.rules, cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), established(), verdict(expr.VerdictAccept)))
	gw := cfg.Gateway().As4()
	for _, p := range cfg.OfferedPorts {
		input.rules = append(input.rules, cat(
			ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br),
			ipv4Field(16, gw[:], nil),
			tcpDport(p),
			verdict(expr.VerdictAccept)))
	}
	input.rules = append(input.rules, cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), verdict(expr.VerdictDrop)))

	forward := chainRules{chain: &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}}
	forward.rules = [][]expr.Any{
		cat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), established(), verdict(expr.VerdictAccept)),
	}
	if set != nil {
		forward.rules = append(forward.rules, cat(
			ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br),
			ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br),
			ctNew(),
			tcpDportRange(uint16(cfg.PortMin), uint16(cfg.PortMax)),
			verdict(expr.VerdictDrop)))
		forward.rules = append(forward.rules, cat(
			ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, br),
			ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br),
			dnatted(),
			verdict(expr.VerdictAccept)))
	}
	forward.rules = append(forward.rules, cat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), verdict(expr.VerdictDrop)))

	post := chainRules{chain: &nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept}}
	base := cfg.CIDR.Addr().As4()
	mask := [4]byte{}
	for i := 0; i < cfg.CIDR.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	post.rules = [][]expr.Any{
		cat(ipv4Field(12, base[:], mask[:]), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br), []expr.Any{&expr.Masq{}}),
	}
	out := []chainRules{input, forward, post}
	if set == nil {
		return out
	}
	pub := cfg.PublishIP.As4()
	pre := chainRules{chain: &nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}}
	pre.rules = [][]expr.Any{cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, br), ipv4Field(16, pub[:], nil), dnatPublished(set))}
	output := chainRules{chain: &nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept}}
	output.rules = [][]expr.Any{cat(ipv4Field(16, pub[:], nil), dnatPublished(set))}
	return append(out, pre, output)
}

// dnatPublished translates a TCP packet whose destination port is in the
// published map to the port's replica address, keeping the port.
func dnatPublished(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}

// dnatted matches a connection whose destination was translated (ct status
// dnat).
func dnatted() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// ctNew matches the first packet of a connection (ct state new).
func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func tcpDportRange(lo, hi uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binaryutil.BigEndian.PutUint16(lo), ToData: binaryutil.BigEndian.PutUint16(hi)},
	}
}

// ipsDstNAT is IPS_DST_NAT of the conntrack status bits.
const ipsDstNAT = 1 << 5

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ifname matches the input or output interface name, NUL-padded as the
// kernel compares it.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// ipv4Field matches an IPv4 packet whose 4 bytes at offset of the network
// header (12 source, 16 destination), masked if mask is set, equal want.
func ipv4Field(offset uint32, want, mask []byte) []expr.Any {
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
	}
	if mask != nil {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: want})
}

func tcpDport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// tableExists reports whether bridge's table is installed.
func tableExists(bridge string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == TableName(bridge) {
			return true, nil
		}
	}
	return false, nil
}
