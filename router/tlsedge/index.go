package tlsedge

import (
	"crypto/tls"
	"sort"
	"strings"
)

// Pair is one loaded certificate and the name of its files (without the
// extension).
type Pair struct {
	Name string
	Cert *tls.Certificate
}

// DefaultPair is the name of the pair served to a connection whose SNI
// name no pair holds (or that sent none).
const DefaultPair = "default"

// Index picks a certificate by SNI name. It is immutable.
type Index struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // by the suffix after "*."
	def      *tls.Certificate
}

// NewIndex indexes pairs by the DNS names of their leaf certificates (the
// common name when there are none). When two pairs hold one name, the
// first by pair name wins.
func NewIndex(pairs []Pair) *Index {
	sorted := append([]Pair(nil), pairs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	ix := &Index{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, p := range sorted {
		if p.Cert == nil || p.Cert.Leaf == nil {
			continue
		}
		names := p.Cert.Leaf.DNSNames
		if len(names) == 0 && p.Cert.Leaf.Subject.CommonName != "" {
			names = []string{p.Cert.Leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m, key := ix.exact, n
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, key = ix.wildcard, rest
			}
			if _, taken := m[key]; !taken {
				m[key] = p.Cert
			}
		}
		if ix.def == nil || p.Name == DefaultPair {
			ix.def = p.Cert
		}
	}
	return ix
}

// Match finds the certificate for an SNI name: exact, then a wildcard for
// the name's parent (one label only, as RFC 6125 has it). It does not
// fall back to the default.
func (ix *Index) Match(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil
	}
	if c := ix.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
		return ix.wildcard[parent]
	}
	return nil
}

// Default is the certificate for names no pair holds; nil when the index
// is empty.
func (ix *Index) Default() *tls.Certificate { return ix.def }

// Pick is Match, else Default.
func (ix *Index) Pick(name string) *tls.Certificate {
	if c := ix.Match(name); c != nil {
		return c
	}
	return ix.def
}

// Len is how many pairs' names the index holds (exact and wildcard).
func (ix *Index) Len() int { return len(ix.exact) + len(ix.wildcard) }
