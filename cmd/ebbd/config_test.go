package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ebbd.yaml")
	require.NoError(t, os.WriteFile(file, []byte("domain: fn.example\napiAddr: 127.0.0.1:9999\nlogLevel: debug\nmaxConnsPerIP: 50\n"), 0o600))
	stickyFile := filepath.Join(dir, "sticky.yaml")
	require.NoError(t, os.WriteFile(stickyFile, []byte("stickyCookie: from-file\nstickyHeader: X-File\n"), 0o600))
	badFile := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badFile, []byte("domian: typo\n"), 0o600))

	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, c Config) {
			assert.Equal(t, RoleAll, c.Role)
			assert.Equal(t, "127.0.0.1:8090", c.APIAddr)
			assert.Equal(t, ":8080", c.HTTPAddr)
			assert.Equal(t, "embedded", c.Store)
			assert.Equal(t, "localhost", c.Domain)
			assert.Equal(t, "/run/containerd/containerd.sock", c.ContainerdAddress)
			assert.Equal(t, "auto", c.Runc)
			assert.Equal(t, int64(4<<30), c.MaxSpoolBytes)
			assert.Zero(t, c.MaxConnsPerIP)
			assert.Equal(t, 2, c.MaxRetries)
		}},
		{name: "runc path", args: []string{"--runc", "/usr/local/bin/ebb-runc"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "/usr/local/bin/ebb-runc", c.Runc)
		}},
		{name: "relative runc", args: []string{"--runc", "ebb-runc"}, wantErr: "--runc"},
		{name: "max spool bytes", args: []string{"--config", file, "--max-spool-bytes", "1048576"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, int64(1<<20), c.MaxSpoolBytes)
		}},
		{name: "max spool bytes not positive", args: []string{"--max-spool-bytes", "0"}, wantErr: "--max-spool-bytes"},
		{name: "flags", args: []string{"--data-dir", "rel/dir", "--http-addr", "127.0.0.1:8081", "--domain", "fn.test"}, check: func(t *testing.T, c Config) {
			assert.True(t, filepath.IsAbs(c.DataDir), "data dir is made absolute")
			assert.Equal(t, "127.0.0.1:8081", c.HTTPAddr)
			assert.Equal(t, "fn.test", c.Domain)
		}},
		{name: "file", args: []string{"--config", file}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "fn.example", c.Domain)
			assert.Equal(t, "127.0.0.1:9999", c.APIAddr)
			assert.Equal(t, "debug", c.LogLevel)
			assert.Equal(t, 50, c.MaxConnsPerIP)
		}},
		{name: "flags beat file", args: []string{"--config", file, "--domain", "cli.test", "--max-conns-per-ip", "7"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "cli.test", c.Domain)
			assert.Equal(t, "127.0.0.1:9999", c.APIAddr)
			assert.Equal(t, 7, c.MaxConnsPerIP)
		}},
		{name: "per-IP cap", args: []string{"--max-conns-per-ip", "100"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, 100, c.MaxConnsPerIP)
		}},
		{name: "negative per-IP cap", args: []string{"--max-conns-per-ip", "-1"}, wantErr: "--max-conns-per-ip"},
		{name: "retries", args: []string{"--max-retries", "5"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, 5, c.MaxRetries)
		}},
		{name: "no retries", args: []string{"--max-retries", "0"}, wantErr: "--max-retries 0: must be between 1 and 16"},
		{name: "too many retries", args: []string{"--max-retries", "17"}, wantErr: "--max-retries 17: must be between 1 and 16"},
		{name: "sticky off by default", args: nil, check: func(t *testing.T, c Config) {
			assert.Empty(t, c.StickyCookie)
			assert.Empty(t, c.StickyHeader)
			assert.Empty(t, c.routerConfig().StickyCookie)
		}},
		{name: "sticky cookie and header", args: []string{"--sticky-cookie", "ebb-rev", "--sticky-header", "X-User"}, check: func(t *testing.T, c Config) {
			rc := c.routerConfig()
			assert.Equal(t, "ebb-rev", rc.StickyCookie)
			assert.Equal(t, "X-User", rc.StickyHeader)
			assert.Equal(t, c.HTTPAddr, rc.Addr)
			assert.Equal(t, c.Domain, rc.Domain)
			assert.Equal(t, c.MaxRetries, rc.MaxRetries)
		}},
		{name: "sticky from file, flag wins", args: []string{"--config", stickyFile, "--sticky-header", "X-Tenant"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "from-file", c.StickyCookie)
			assert.Equal(t, "X-Tenant", c.StickyHeader)
		}},
		{name: "bad sticky cookie", args: []string{"--sticky-cookie", "a=b; Path=/"}, wantErr: "not a cookie name"},
		{name: "bad sticky header", args: []string{"--sticky-header", "X User"}, wantErr: "not a header name"},
		{name: "sticky header with CRLF", args: []string{"--sticky-header", "X-User\r\nX-Evil"}, wantErr: "--sticky-header"},
		{name: "redis store", args: []string{"--store", "redis://127.0.0.1:6379/0", "--role", "router"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, RoleRouter, c.Role)
		}},
		{name: "replica ports", args: []string{"--replica-ports", "30000-30099", "--host-ip", "10.0.0.5"}, check: func(t *testing.T, c Config) {
			lo, hi, err := c.replicaPortRange()
			require.NoError(t, err)
			assert.Equal(t, []int{30000, 30099}, []int{lo, hi})
			assert.Equal(t, "10.0.0.5", c.HostIP)
		}},
		{name: "bad replica ports", args: []string{"--replica-ports", "300-20"}, wantErr: "--replica-ports"},
		{name: "bad host ip", args: []string{"--host-ip", "example"}, wantErr: "--host-ip"},
		{name: "vip prefix", args: []string{"--vip-prefix", "127.78.1.0/24"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "127.78.1.0/24", c.VIPPrefix)
		}},
		{name: "vip prefix off loopback", args: []string{"--vip-prefix", "10.0.0.0/16"}, wantErr: "must lie in 127.0.0.0/8"},
		{name: "vip prefix not a prefix", args: []string{"--vip-prefix", "127.77.0.1"}, wantErr: "--vip-prefix"},
		{name: "bad ebpf mode", args: []string{"--ebpf", "maybe"}, wantErr: "--ebpf"},
		{name: "registry pulls", args: []string{"--insecure-registry", "127.0.0.1:5000", "--insecure-registry", "registry.local", "--docker-hub-pulls"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, []string{"127.0.0.1:5000", "registry.local"}, c.InsecureRegistries)
			assert.True(t, c.DockerHubPulls)
		}},
		{name: "no registry pulls by default", args: nil, check: func(t *testing.T, c Config) {
			assert.Empty(t, c.InsecureRegistries)
			assert.False(t, c.DockerHubPulls, "a missing upload is never looked for on Docker Hub")
		}},
		{name: "insecure registry with a scheme", args: []string{"--insecure-registry", "http://127.0.0.1:5000"}, wantErr: "--insecure-registry"},
		{name: "unknown role", args: []string{"--role", "everything"}, wantErr: "must be all, controlplane, router or nodeagent"},
		{name: "bad store", args: []string{"--store", "postgres://x"}, wantErr: "must be \"embedded\" or a redis:// or redis-sentinel:// URL"},
		{name: "placeholder redis password", args: []string{"--store", "redis://:CHANGE-ME@10.0.0.10:6379/0"}, wantErr: "placeholder CHANGE-ME"},
		{name: "sentinel store", args: []string{"--role", "router", "--store", "redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/ebb"}, check: func(t *testing.T, c Config) {
			assert.Equal(t, "redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/ebb", c.Store)
		}},
		{name: "unparseable store hides its password", args: []string{"--store", "redis://:hunter2@[::1"}, wantErr: "--store"},
		{name: "split role on embedded", args: []string{"--role", "router"}, wantErr: "needs a shared store"},
		{name: "bad address", args: []string{"--api-addr", "8090"}, wantErr: "must be host:port"},
		{name: "bad domain", args: []string{"--domain", "Bad_Domain"}, wantErr: "DNS label"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected argument"},
		{name: "unknown file key", args: []string{"--config", badFile}, wantErr: "field domian not found"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "none.yaml")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, io.Discard)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestRegistryAddr(t *testing.T) {
	for _, tt := range []struct{ apiAddr, want string }{
		{"10.0.0.10:8090", "10.0.0.10:8090"},
		{"127.0.0.1:18090", "127.0.0.1:18090"},
		{"cp.example.com:8090", "cp.example.com:8090"},
		{":8090", ""},
		{"0.0.0.0:8090", ""},
		{"[::]:8090", ""},
		{"nonsense", ""},
	} {
		assert.Equal(t, tt.want, registryAddr(tt.apiAddr), tt.apiAddr)
	}
}
