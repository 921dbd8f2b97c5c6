package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Peer is a proxy the router is compared with, started by the harness on a
// loopback port in front of the same backend.
type Peer struct {
	Name string
	Addr string
	proc *Proc
	h    *Harness
}

// Stop stops the proxy by its PID.
func (p *Peer) Stop() {
	if p.proc != nil {
		p.proc.Stop(syscall.SIGTERM, 5*time.Second)
		p.h.procs.Forget(p.proc)
	}
}

// haproxyConfig is HAProxy with one thread, keep-alive to the backend and
// connection reuse: the configuration a careful operator would use.
func haproxyConfig(listen, backend string) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn 4096
    tune.bufsize 16384

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always

frontend bench
    bind %s
    default_backend replica

backend replica
    server replica1 %s
`, listen, backend)
}

// nginxConfig is nginx with one worker process, an upstream keep-alive pool
// and no access log.
func nginxConfig(dir, listen, backend string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events {
    worker_connections 20000;
}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    upstream replica {
        server %[3]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[2]s;
        location / {
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, dir, listen, backend)
}

// StartHAProxy starts HAProxy in the foreground (-db) so its PID is ours.
func (h *Harness) StartHAProxy(ctx context.Context, backend string) (*Peer, error) {
	dir, err := os.MkdirTemp(h.work, "haproxy-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(loopback(port), backend)), 0o644); err != nil {
		return nil, err
	}
	return h.startPeer(ctx, "haproxy", loopback(port), dir, exec.Command("haproxy", "-db", "-f", cfg))
}

// StartNginx starts nginx with daemon off, so the master's PID is ours; it
// stops its worker when told to stop.
func (h *Harness) StartNginx(ctx context.Context, backend string) (*Peer, error) {
	dir, err := os.MkdirTemp(h.work, "nginx-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// The workers run as nobody and must reach the temp dirs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(nginxConfig(dir, loopback(port), backend)), 0o644); err != nil {
		return nil, err
	}
	return h.startPeer(ctx, "nginx", loopback(port), dir, exec.Command("nginx", "-c", cfg, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log")))
}

func (h *Harness) startPeer(ctx context.Context, name, addr, dir string, cmd *exec.Cmd) (*Peer, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := h.procs.Start(name, cmd)
	if err != nil {
		return nil, err
	}
	peer := &Peer{Name: name, Addr: addr, proc: p, h: h}
	if err := poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if ok, werr := p.Exited(); ok {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			return false, fmt.Errorf("%s exited (%v): %s", name, werr, oneLine(string(b), 500))
		}
		return waitHTTP(ctx, addr, time.Millisecond, 50*time.Millisecond) == nil, nil
	}); err != nil {
		peer.Stop()
		return nil, err
	}
	return peer, nil
}
