package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"

	"github.com/valyala/fasthttp"
)

// fieldKind is what a request header field means to a proxy.
type fieldKind uint8

const (
	fieldPass       fieldKind = iota
	fieldDrop                 // hop-by-hop, framing, or ours to replace
	fieldConnection           // Connection: drop, but honour its tokens
	fieldHost
	fieldXFF
	fieldForwarded
	fieldXFProto
	fieldXFHost
)

// classify names the fields a proxy treats specially. It compares case
// insensitively and switches on length first, so the common fields cost a
// couple of comparisons.
func classify(k []byte) fieldKind {
	switch len(k) {
	case 2:
		if eqFold(k, "te") {
			return fieldDrop
		}
	case 4:
		if eqFold(k, "host") {
			return fieldHost
		}
	case 6:
		if eqFold(k, "expect") {
			return fieldDrop
		}
	case 7:
		if eqFold(k, "upgrade") || eqFold(k, "trailer") {
			return fieldDrop
		}
	case 9:
		if eqFold(k, "forwarded") {
			return fieldForwarded
		}
	case 10:
		if eqFold(k, "connection") {
			return fieldConnection
		}
		if eqFold(k, "keep-alive") {
			return fieldDrop
		}
	case 14:
		if eqFold(k, "content-length") {
			return fieldDrop
		}
	case 15:
		if eqFold(k, "x-forwarded-for") {
			return fieldXFF
		}
	case 16:
		if eqFold(k, "proxy-connection") || eqFold(k, "x-forwarded-host") {
			if k[0]|0x20 == 'x' {
				return fieldXFHost
			}
			return fieldDrop
		}
	case 17:
		if eqFold(k, "transfer-encoding") || eqFold(k, "x-forwarded-proto") {
			if k[0]|0x20 == 'x' {
				return fieldXFProto
			}
			return fieldDrop
		}
	case 18:
		if eqFold(k, "proxy-authenticate") {
			return fieldDrop
		}
	case 19:
		if eqFold(k, "proxy-authorization") {
			return fieldDrop
		}
	}
	if len(k) >= 4 && eqFold(k[:4], "ebb-") {
		return fieldDrop
	}
	return fieldPass
}

// eqFold compares b to the lower-case ASCII s, ignoring b's case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// headState carries what one pass over the request fields collected.
type headState struct {
	xff, fwd   [4][]byte
	nxff, nfwd int
	// tokens are field names listed in Connection (other than close,
	// keep-alive and upgrade); those fields are hop-by-hop too.
	tokens  [8][]byte
	ntokens int
	extra   [][]byte // tokens past the fixed array; rare
	sawHost bool
	// traceparent says the client's traceparent fields are replaced.
	traceparent bool
}

func (st *headState) named(k []byte) bool {
	for i := 0; i < st.ntokens; i++ {
		if eqFoldBytes(k, st.tokens[i]) {
			return true
		}
	}
	for _, t := range st.extra {
		if eqFoldBytes(k, t) {
			return true
		}
	}
	return false
}

// addTokens records the field names a Connection value lists. It reports
// whether it found any that name other fields.
func (st *headState) addTokens(v []byte) bool {
	found := false
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.Trim(tok, " \t")
		if len(tok) == 0 || eqFold(tok, "close") || eqFold(tok, "keep-alive") || eqFold(tok, "upgrade") {
			continue
		}
		found = true
		if st.ntokens < len(st.tokens) {
			st.tokens[st.ntokens] = tok
			st.ntokens++
		} else {
			st.extra = append(st.extra, tok)
		}
	}
	return found
}

// appendHead writes the request line and the rewritten header fields.
// framing is the Content-Length to send, -1 for chunked, -2 for no body.
// upgrade, when set, keeps the connection upgrade the client asked for;
// traceparent, when set, replaces the client's traceparent fields.
func appendHead(dst []byte, ctx *fasthttp.RequestCtx, framing int64, upgrade, traceparent []byte) []byte {
	h := &ctx.Request.Header
	dst = append(dst, h.Method()...)
	dst = append(dst, ' ')
	dst = appendTarget(dst, h.RequestURI())
	dst = append(dst, " HTTP/1.1\r\n"...)

	st := headState{traceparent: traceparent != nil}
	mark := len(dst)
	var redo bool
	dst, redo = appendFields(dst, h, &st)
	if redo {
		// A Connection field named other fields, possibly ones we already
		// copied: start over knowing the names.
		dst = dst[:mark]
		tokens, ntokens, extra := st.tokens, st.ntokens, st.extra
		st = headState{tokens: tokens, ntokens: ntokens, extra: extra, traceparent: traceparent != nil}
		dst, _ = appendFields(dst, h, &st)
	}
	if !st.sawHost {
		if host := h.Host(); len(host) > 0 {
			dst = appendField(dst, "Host", host)
		}
	}
	if traceparent != nil {
		dst = appendField(dst, "traceparent", traceparent)
	}
	dst = appendForwarding(dst, ctx, &st)
	if upgrade != nil {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
		dst = append(dst, upgrade...)
		dst = append(dst, '\r', '\n')
	}
	switch {
	case framing > 0 || (framing == 0 && !h.IsGet() && !h.IsHead()):
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, framing, 10)
		dst = append(dst, '\r', '\n')
	case framing == -1:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, '\r', '\n')
}

// appendFields copies the fields that pass, in the order received. It
// reports whether it met a Connection field naming fields it did not know
// about when the pass began.
func appendFields(dst []byte, h *fasthttp.RequestHeader, st *headState) ([]byte, bool) {
	known := st.ntokens + len(st.extra)
	redo := false
	for k, v := range h.AllInOrder() {
		switch classify(k) {
		case fieldDrop, fieldXFProto, fieldXFHost:
			continue
		case fieldConnection:
			if known == 0 && st.addTokens(v) {
				redo = true
			}
			continue
		case fieldHost:
			st.sawHost = true
		case fieldXFF:
			if st.nxff < len(st.xff) {
				st.xff[st.nxff] = v
				st.nxff++
			}
			continue
		case fieldForwarded:
			if st.nfwd < len(st.fwd) {
				st.fwd[st.nfwd] = v
				st.nfwd++
			}
			continue
		}
		if known > 0 && st.named(k) {
			continue
		}
		if st.traceparent && len(k) == 11 && eqFold(k, "traceparent") {
			continue
		}
		dst = append(dst, k...)
		dst = append(dst, ':', ' ')
		dst = append(dst, v...)
		dst = append(dst, '\r', '\n')
	}
	return dst, redo
}

func appendField(dst []byte, k string, v []byte) []byte {
	dst = append(dst, k...)
	dst = append(dst, ':', ' ')
	dst = append(dst, v...)
	return append(dst, '\r', '\n')
}

// appendForwarding adds this hop to X-Forwarded-For and Forwarded and sets
// X-Forwarded-Proto and X-Forwarded-Host, replacing any the client sent.
func appendForwarding(dst []byte, ctx *fasthttp.RequestCtx, st *headState) []byte {
	ip, hasIP := clientAddr(ctx.RemoteAddr())
	host := ctx.Request.Header.Host()

	if st.nxff > 0 || hasIP {
		dst = append(dst, "X-Forwarded-For: "...)
		for i := 0; i < st.nxff; i++ {
			dst = append(dst, st.xff[i]...)
			if i < st.nxff-1 || hasIP {
				dst = append(dst, ',', ' ')
			}
		}
		if hasIP {
			dst = ip.AppendTo(dst)
		}
		dst = append(dst, '\r', '\n')
	}
	dst = append(dst, "X-Forwarded-Proto: http\r\n"...)
	if len(host) > 0 {
		dst = appendField(dst, "X-Forwarded-Host", host)
	}
	dst = append(dst, "Forwarded: "...)
	for i := 0; i < st.nfwd; i++ {
		dst = append(dst, st.fwd[i]...)
		dst = append(dst, ',', ' ')
	}
	dst = append(dst, "for="...)
	switch {
	case !hasIP:
		dst = append(dst, "unknown"...)
	case ip.Is6():
		dst = append(dst, `"[`...)
		dst = ip.AppendTo(dst)
		dst = append(dst, `]"`...)
	default:
		dst = ip.AppendTo(dst)
	}
	if len(host) > 0 && bytes.IndexByte(host, '"') < 0 && bytes.IndexByte(host, '\\') < 0 {
		dst = append(dst, `;host="`...)
		dst = append(dst, host...)
		dst = append(dst, '"')
	}
	dst = append(dst, ";proto=http\r\n"...)
	return dst
}

func clientAddr(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// appendTarget writes the request target in origin form: absolute-form
// targets lose their scheme and authority.
func appendTarget(dst, uri []byte) []byte {
	if len(uri) == 0 {
		return append(dst, '/')
	}
	if uri[0] == '/' || (len(uri) == 1 && uri[0] == '*') {
		return append(dst, uri...)
	}
	if i := bytes.Index(uri, []byte("://")); i >= 0 {
		rest := uri[i+3:]
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			return append(dst, rest[j:]...)
		}
		if j := bytes.IndexByte(rest, '?'); j >= 0 {
			dst = append(dst, '/')
			return append(dst, rest[j:]...)
		}
		return append(dst, '/')
	}
	return append(dst, uri...)
}

// stripResponseHopByHop removes hop-by-hop fields from an upstream response,
// including any its Connection field names. fasthttp already took Connection:
// close and Transfer-Encoding apart; it re-frames the body itself.
func stripResponseHopByHop(h *fasthttp.ResponseHeader) {
	var st headState
	found := 0
	var drop [8][]byte
	for k, v := range h.All() {
		switch classify(k) {
		case fieldConnection:
			st.addTokens(v)
			if found < len(drop) {
				drop[found] = k
				found++
			}
		case fieldDrop:
			if eqFold(k, "transfer-encoding") || eqFold(k, "content-length") {
				continue
			}
			if eqFold(k, "upgrade") && h.StatusCode() == fasthttp.StatusSwitchingProtocols {
				continue
			}
			if found < len(drop) {
				drop[found] = k
				found++
			}
		}
	}
	if found == 0 && st.ntokens == 0 {
		return
	}
	// Deleting while iterating would skip fields; collect names first. The
	// names point into the header's own storage, so copy them before Del
	// rearranges it.
	var names [16][]byte
	var scratch [512]byte
	buf := scratch[:0]
	n := 0
	for i := 0; i < found && n < len(names); i++ {
		start := len(buf)
		buf = append(buf, drop[i]...)
		names[n] = buf[start:len(buf):len(buf)]
		n++
	}
	for i := 0; i < st.ntokens && n < len(names); i++ {
		start := len(buf)
		buf = append(buf, st.tokens[i]...)
		names[n] = buf[start:len(buf):len(buf)]
		n++
	}
	for i := 0; i < n; i++ {
		h.DelBytes(names[i])
	}
}
