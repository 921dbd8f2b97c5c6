package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RequirePrivileged reports whether skips must fail, as in CI.
func RequirePrivileged() bool { return os.Getenv("EBB_REQUIRE_PRIVILEGED") == "1" }

// Skip skips the test with reason, or fails it when EBB_REQUIRE_PRIVILEGED=1.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if RequirePrivileged() {
		t.Fatalf("EBB_REQUIRE_PRIVILEGED=1 but this test cannot run: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails, see Skip) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// RequireBinary returns the path of a program on PATH, or skips (see Skip).
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, fmt.Sprintf("needs %s on PATH (make test installs it)", name))
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RedisServer is a redis-server the test started.
type RedisServer struct {
	Addr  string
	Dir   string
	cmd   *exec.Cmd
	extra []string // more redis-server arguments, as a replica's
}

// URL is the redis:// URL of the server.
func (r *RedisServer) URL() string { return "redis://" + r.Addr + "/0" }

// Kill stops the server with SIGKILL, as a crash would.
func (r *RedisServer) Kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Restart starts the server again on the same port and data directory.
func (r *RedisServer) Restart(t testing.TB) {
	t.Helper()
	r.Kill()
	r.start(t)
}

// Redis starts a real redis-server on a free loopback port with AOF and
// appendfsync always, so every acknowledged write survives a crash. It is
// stopped when the test ends.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	RequireBinary(t, "redis-server")
	r := &RedisServer{
		Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Dir:  t.TempDir(),
	}
	r.start(t)
	t.Cleanup(r.Kill)
	return r
}

func (r *RedisServer) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", port, "--dir", r.Dir,
		"--appendonly", "yes", "--appendfsync", "always",
		"--save", "", "--protected-mode", "yes", "--daemonize", "no",
		"--logfile", filepath.Join(r.Dir, "redis.log"))
	cmd.Args = append(cmd.Args, r.extra...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pingRedis(r.Addr) {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling a child process start, not timing a test
	}
	log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	t.Fatalf("redis-server on %s did not come up: %s", r.Addr, log)
}

func pingRedis(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
