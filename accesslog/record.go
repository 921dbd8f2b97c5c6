package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ebbrun/ebb/api"
)

// Record is one request as the router saw it. Every field is a plain value
// so that callers fill it on the stack.
type Record struct {
	// Time is when the request arrived.
	Time time.Time
	// Function is the function's qualified name (api.QualifiedName:
	// "hello", or "hello.team-a" outside the default namespace).
	Function string
	Revision string
	// Replica served the request; empty when none did (the request was
	// refused, or timed out while queued).
	Replica string
	Status  int
	// Duration is from arrival until the response head was ready; a
	// streamed body may go on after it.
	Duration time.Duration
	// BytesIn and BytesOut are the body sizes as framed (Content-Length);
	// a body of unknown length counts 0.
	BytesIn, BytesOut int64
	// Protocol is "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0".
	Protocol string
	// Cold says the request waited for a replica of a revision that had
	// none; StartDuration is how long it waited.
	Cold          bool
	StartDuration time.Duration
	// TraceID is the W3C trace id; all zeros writes an empty string.
	TraceID [16]byte
}

// AppendJSON appends r as one JSON object and a newline to dst:
//
//	{"time":"2026-12-06T19:52:54.123456Z","namespace":"default","function":"hello",
//	 "revision":"hello-00001","replica":"hello-00001-x1","status":200,
//	 "duration_ms":1.25,"bytes_in":0,"bytes_out":12,"protocol":"HTTP/1.1",
//	 "cold":false,"start_ms":0,"trace_id":"4bf9…"}
//
// It allocates nothing when dst has room.
func AppendJSON(dst []byte, r *Record) []byte {
	dst = append(dst, `{"time":"`...)
	dst = appendTime(dst, r.Time)
	ns, name := api.SplitQualifiedName(r.Function)
	if r.Function == "" {
		ns = ""
	}
	dst = append(dst, `","namespace":`...)
	dst = appendString(dst, ns)
	dst = append(dst, `,"function":`...)
	dst = appendString(dst, name)
	dst = append(dst, `,"revision":`...)
	dst = appendString(dst, r.Revision)
	dst = append(dst, `,"replica":`...)
	dst = appendString(dst, r.Replica)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, `,"duration_ms":`...)
	dst = appendMillis(dst, r.Duration)
	dst = append(dst, `,"bytes_in":`...)
	dst = strconv.AppendInt(dst, r.BytesIn, 10)
	dst = append(dst, `,"bytes_out":`...)
	dst = strconv.AppendInt(dst, r.BytesOut, 10)
	dst = append(dst, `,"protocol":`...)
	dst = appendString(dst, r.Protocol)
	dst = append(dst, `,"cold":`...)
	dst = strconv.AppendBool(dst, r.Cold)
	dst = append(dst, `,"start_ms":`...)
	dst = appendMillis(dst, r.StartDuration)
	dst = append(dst, `,"trace_id":"`...)
	if r.TraceID != [16]byte{} {
		for _, c := range r.TraceID {
			dst = append(dst, hex[c>>4], hex[c&0xf])
		}
	}
	return append(dst, "\"}\n"...)
}

// appendMillis writes d in milliseconds with microsecond precision and no
// trailing zeros, as strconv would write the float, without its cost.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	dst = strconv.AppendInt(dst, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return dst
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, digits[:n]...)
}

// appendTime writes t in UTC as 2006-01-02T15:04:05.000000Z: fixed width,
// so lines sort by time as strings. It is time.AppendFormat's output for
// that layout at a third of its cost.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, 'Z')
}

// appendDigits writes v, which is not negative, zero-padded to width.
func appendDigits(dst []byte, v, width int) []byte {
	var b [8]byte
	i := len(b)
	for ; width > 0 || v > 0; width-- {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, b[i:]...)
}

const hex = "0123456789abcdef"

// appendString writes s as a JSON string. Names in ebb are plain DNS
// labels, but the encoder does not rely on it: quotes, control characters
// and invalid UTF-8 are escaped or replaced, so a line is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
