package router

import (
	"strings"

	"github.com/ebbrun/ebb/api"
)

// mapDomains adds the custom domain mappings of t.domSnap to t's hosts:
// each mapped host routes like its function's own host ({fn}.{domain}),
// traffic split, tags and header matches included. A mapping whose
// function has no routes (deleted: the mapping is orphaned) is left out,
// so its host answers 404; a mapping of a host the routing domain already
// names ({fn}.{domain}, {tag}-{fn}.{domain}) loses to the generated host.
func mapDomains(t *table, domain string) {
	if t.domSnap == nil {
		return
	}
	for c := range t.domSnap.All() {
		d := c.Value
		host := strings.ToLower(d.Host)
		if _, taken := t.hosts[host]; taken || host == domain || strings.HasSuffix(host, "."+domain) {
			continue
		}
		fn := t.functions[api.QualifiedName(d.Namespace, d.Function)]
		if fn == nil {
			continue
		}
		rt := *fn
		rt.redirect = d.Redirect
		t.hosts[host] = &rt
	}
}
