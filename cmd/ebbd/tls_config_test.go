package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTLSFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("tlsListen: 127.0.0.1:8443\ntlsCertDir: /etc/ebb/tls\nhstsMaxAge: 1h\nhttpsRedirect: true\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		listen  string
		hsts    time.Duration
		wantErr string
	}{
		{name: "off by default"},
		{name: "cert dir", args: []string{"--tls-listen", ":8443", "--tls-cert-dir", "/etc/ebb/tls"}, listen: ":8443"},
		{name: "acme", args: []string{"--tls-listen", ":8443", "--acme-directory", "https://127.0.0.1:14000/dir", "--acme-ca-file", "/etc/ebb/ca.pem"}, listen: ":8443"},
		{name: "file", args: []string{"--config", file}, listen: "127.0.0.1:8443", hsts: time.Hour},
		{name: "flags beat file", args: []string{"--config", file, "--hsts-max-age", "0s", "--https-redirect=false"}, listen: "127.0.0.1:8443"},
		{name: "no certificates", args: []string{"--tls-listen", ":8443"}, wantErr: "--tls-listen needs certificates"},
		{name: "certs without listener", args: []string{"--tls-cert-dir", "/etc/ebb/tls"}, wantErr: "need --tls-listen"},
		{name: "hsts without listener", args: []string{"--hsts-max-age", "1h"}, wantErr: "need --tls-listen"},
		{name: "negative hsts", args: []string{"--tls-listen", ":8443", "--tls-cert-dir", "/x", "--hsts-max-age", "-1s"}, wantErr: "--hsts-max-age"},
		{name: "bad listen", args: []string{"--tls-listen", "8443", "--tls-cert-dir", "/x"}, wantErr: "--tls-listen \"8443\""},
		{name: "relative dir", args: []string{"--tls-listen", ":8443", "--tls-cert-dir", "tls"}, wantErr: "--tls-cert-dir \"tls\""},
		{name: "plain acme", args: []string{"--tls-listen", ":8443", "--acme-directory", "http://ca/dir"}, wantErr: "--acme-directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseConfigCase(t, tt.args, tt.wantErr)
			if ok {
				assert.Equal(t, tt.listen, cfg.TLSListen)
				assert.Equal(t, tt.hsts, cfg.HSTSMaxAge)
				assert.Equal(t, tt.hsts > 0, cfg.HTTPSRedirect)
			}
		})
	}
}
