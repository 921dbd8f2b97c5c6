package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateHost(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		host string
		ok   bool
	}{
		{"api.example.com", true},
		{"a.b", true},
		{"x-1.example.co.uk", true},
		{long + "." + long + "." + long + "." + strings.Repeat("b", 61), true},  // 253
		{long + "." + long + "." + long + "." + strings.Repeat("b", 62), false}, // 254
		{"", false},
		{"localhost", false},                      // one label
		{"*.example.com", false},                  // wildcard
		{"api.*.com", false},                      // wildcard inside
		{"127.0.0.1", false},                      // IPv4
		{"::1", false},                            // IPv6
		{"[::1]", false},                          // bracketed IPv6
		{"API.example.com", false},                // not lowercase
		{"api.example.com.", false},               // trailing dot
		{".example.com", false},                   // empty label
		{"api..example.com", false},               // empty label
		{"-api.example.com", false},               // leading hyphen
		{"api-.example.com", false},               // trailing hyphen
		{"api.example.com:443", false},            // port
		{"api_x.example.com", false},              // underscore
		{"api.example.123", false},                // numeric TLD
		{"api.exa mple.com", false},               // space
		{"api.example.com/x", false},              // path
		{"a\x00.example.com", false},              // NUL
		{strings.Repeat("a", 64) + ".com", false}, // label too long
		{"bücher.example", false},                 // not punycode
		{"xn--bcher-kva.example", true},           // punycode
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			err := ValidateHost("host", tt.host)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, IsValidation(err), "a bad host is a 400")
		})
	}
}
