package callbackurl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// Policy says which addresses callbacks may reach. The zero Policy
// allows public addresses only.
type Policy struct {
	// Allow are loopback or private ranges callbacks may reach too. They
	// never open the ranges refused always.
	Allow []netip.Prefix
}

// ErrRefused is wrapped by every refusal.
var ErrRefused = errors.New("callback address refused")

// Parse reads a comma-separated list of CIDRs (or bare addresses) into a
// Policy; "" allows nothing beyond public addresses.
func Parse(list string) (Policy, error) {
	var p Policy
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return Policy{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		p.Allow = append(p.Allow, pfx.Masked())
	}
	return p, nil
}

// String is the policy as Parse reads it.
func (p Policy) String() string {
	s := make([]string, len(p.Allow))
	for i, a := range p.Allow {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// CheckAddr says whether a callback may reach addr: nil, or an error
// wrapping ErrRefused that says why.
func (p Policy) CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return fmt.Errorf("%w: no address", ErrRefused)
	case addr.IsUnspecified():
		return fmt.Errorf("%w: %s is unspecified", ErrRefused, addr)
	case addr.IsMulticast():
		return fmt.Errorf("%w: %s is multicast", ErrRefused, addr)
	case addr.IsLinkLocalUnicast():
		return fmt.Errorf("%w: %s is link-local (cloud metadata services live there)", ErrRefused, addr)
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is broadcast", ErrRefused, addr)
	case addr.IsLoopback() || addr.IsPrivate():
		for _, a := range p.Allow {
			if a.Contains(addr) {
				return nil
			}
		}
		kind := "private"
		if addr.IsLoopback() {
			kind = "loopback"
		}
		return fmt.Errorf("%w: %s is %s and not allowed (ebbd --invoker-callback-allow)", ErrRefused, addr, kind)
	}
	return nil
}

// CheckURL checks a callback URL at submit: an address in it, or
// localhost (which names loopback wherever it resolves), must pass
// CheckAddr. Other names are checked when they are dialed.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return p.CheckAddr(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // a zone names an interface, not an address
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(addr)
	}
	return nil
}

// Control is a net.Dialer Control function: it refuses to connect to an
// address the policy refuses, whatever name resolved to it.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: dial %q: not an address", ErrRefused, address)
	}
	return p.CheckAddr(addr)
}
