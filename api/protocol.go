package api

// The protocols a function's process may speak on its port
// (FunctionSpec.Protocol).
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2C   = "h2c"
)

// ValidateProtocol checks a FunctionSpec.Protocol; empty means
// ProtocolHTTP1.
func ValidateProtocol(p string) error {
	switch p {
	case "", ProtocolHTTP1, ProtocolH2C:
		return nil
	}
	return invalid("protocol", "%q is not one of %q, %q", truncateValue(p), ProtocolHTTP1, ProtocolH2C)
}

// truncateValue bounds a user's value quoted back in an error.
func truncateValue(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// SpeaksH2C reports whether the spec's process speaks HTTP/2 without TLS.
func (s FunctionSpec) SpeaksH2C() bool { return s.Protocol == ProtocolH2C }
