package tracing

import (
	"encoding/binary"
	"math/rand/v2"
)

// HeaderTraceparent is the W3C Trace Context header.
const HeaderTraceparent = "traceparent"

// TraceID and SpanID are W3C trace and span ids; zero is invalid.
type (
	TraceID [16]byte
	SpanID  [8]byte
)

// IsValid reports whether the id is not all zeros.
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether the id is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// AppendHex appends the id as 32 lowercase hex digits.
func (t TraceID) AppendHex(dst []byte) []byte { return appendHex(dst, t[:]) }

// String is the id as 32 lowercase hex digits.
func (t TraceID) String() string { return string(t.AppendHex(make([]byte, 0, 32))) }

// AppendHex appends the id as 16 lowercase hex digits.
func (s SpanID) AppendHex(dst []byte) []byte { return appendHex(dst, s[:]) }

// String is the id as 16 lowercase hex digits.
func (s SpanID) String() string { return string(s.AppendHex(make([]byte, 0, 16))) }

// FlagSampled is the sampled bit of the trace flags.
const FlagSampled = 0x01

// Parent is a parsed traceparent: the caller's trace and span.
type Parent struct {
	TraceID TraceID
	SpanID  SpanID
	Flags   byte
}

// Sampled reports whether the caller records this trace.
func (p Parent) Sampled() bool { return p.Flags&FlagSampled != 0 }

// ParseParent parses a traceparent header value as W3C Trace Context
// level 1 says: version 00 is exactly 55 characters; a later version may be
// longer but must continue with '-'; version ff, upper-case or non-hex
// digits, and all-zero ids are invalid. It reports false for anything
// invalid, and the caller starts a new trace.
func ParseParent(v []byte) (Parent, bool) {
	var p Parent
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return p, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff || (ver == 0 && len(v) != 55) || (len(v) > 55 && v[55] != '-') {
		return p, false
	}
	if !decodeHex(p.TraceID[:], v[3:35]) || !decodeHex(p.SpanID[:], v[36:52]) {
		return p, false
	}
	if p.Flags, ok = hexByte(v[53], v[54]); !ok {
		return p, false
	}
	if !p.TraceID.IsValid() || !p.SpanID.IsValid() {
		return p, false
	}
	return p, true
}

// AppendParent appends a version 00 traceparent value.
func AppendParent(dst []byte, t TraceID, s SpanID, flags byte) []byte {
	dst = append(dst, "00-"...)
	dst = t.AppendHex(dst)
	dst = append(dst, '-')
	dst = s.AppendHex(dst)
	dst = append(dst, '-', hexDigits[flags>>4], hexDigits[flags&0xf])
	return dst
}

// NewTraceID returns a random trace id. It need not be unguessable, only
// unique: math/rand/v2's generator is per-thread and never blocks, which
// matters at 100k requests a second.
func NewTraceID() TraceID {
	var t TraceID
	for !t.IsValid() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// NewSpanID returns a random, valid span id.
func NewSpanID() SpanID {
	var s SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// decodeHex fills dst from lowercase hex src of twice its length.
func decodeHex(dst, src []byte) bool {
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := nibble(hi)
	l, ok2 := nibble(lo)
	return h<<4 | l, ok1 && ok2
}

// nibble decodes a lowercase hex digit; W3C forbids upper case.
func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
