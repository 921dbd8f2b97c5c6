package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/content/local"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/images/archive"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/platforms"
)

// RegistryServer is a CNCF distribution registry (Debian's
// docker-registry) the test started, speaking plain HTTP.
type RegistryServer struct {
	// Addr is host:port on 127.0.0.1, as image references name it.
	Addr string
	// Dir holds its config, its storage (data/) and its log (registry.log).
	Dir string
	// User and Password are the basic-auth credentials it requires, or
	// empty when it requires none.
	User, Password string
}

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// User and Password, when set, make the registry require basic auth
	// (htpasswd, bcrypt) with them.
	User, Password string
}

// registryStartTimeout bounds how long a fresh registry may take to answer.
const registryStartTimeout = 15 * time.Second

// StartRegistry starts a registry on a free loopback port, with storage of
// its own in a temporary directory; it is stopped when the test ends.
// Without docker-registry on PATH (make deps-test installs the Debian
// package), or htpasswd for basic auth, the test skips, or fails with
// EBB_REQUIRE_PRIVILEGED=1.
func StartRegistry(t testing.TB, opts RegistryOptions) *RegistryServer {
	t.Helper()
	bin := RequireBinary(t, "docker-registry")
	dir := t.TempDir()
	r := &RegistryServer{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), Dir: dir, User: opts.User, Password: opts.Password}
	auth := ""
	if opts.User != "" {
		htpasswd := RequireBinary(t, "htpasswd")
		out, err := exec.Command(htpasswd, "-Bbn", opts.User, opts.Password).Output()
		if err != nil {
			t.Fatalf("htpasswd: %v", err)
		}
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatalf("write htpasswd: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: ebb-test\n    path: %s\n", path)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), r.Addr, auth)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatalf("write registry config: %v", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatalf("registry log: %v", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(registryStartTimeout)
	for {
		select {
		case <-exited:
			t.Fatalf("docker-registry on %s exited at start: %s", r.Addr, r.Log())
		default:
		}
		// 200, or 401 with auth on: either way it answers.
		if resp, err := c.Get("http://" + r.Addr + "/v2/"); err == nil {
			resp.Body.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s not answering within %s: %s", r.Addr, registryStartTimeout, r.Log())
		}
		time.Sleep(10 * time.Millisecond) // polling a child process start, not timing a test
	}
}

// Log is what the registry has logged so far.
func (r *RegistryServer) Log() string {
	b, err := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// accessLine is one line of the registry's access log (combined format).
var accessLine = regexp.MustCompile(`"(GET|HEAD|PUT|POST|PATCH|DELETE) (/v2/\S*) HTTP/[0-9.]+" (\d{3}) `)

// Requests counts the requests in the registry's access log with method
// whose path contains pathPart and whose status is 2xx.
func (r *RegistryServer) Requests(method, pathPart string) int {
	return len(r.RequestPaths(method, pathPart))
}

// RequestPaths are the paths of those requests, in the order served.
func (r *RegistryServer) RequestPaths(method, pathPart string) []string {
	var out []string
	for _, line := range strings.Split(r.Log(), "\n") {
		m := accessLine.FindStringSubmatch(line)
		if m != nil && m[1] == method && strings.Contains(m[2], pathPart) && m[3][0] == '2' {
			out = append(out, m[2])
		}
	}
	return out
}

// Push pushes the image of an OCI or docker archive (ebb images build
// writes one) to ref on the registry, which must be r.Addr/<repository>:<tag>,
// with r's credentials. It uses containerd's pusher over a content store
// of its own in a temporary directory: no containerd runs.
func (r *RegistryServer) Push(t testing.TB, archivePath, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatalf("content store: %v", err)
	}
	f, err := os.Open(archivePath)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	defer f.Close()
	idx, err := archive.ImportIndex(ctx, cs, f)
	if err != nil {
		t.Fatalf("push: read %s: %v", archivePath, err)
	}
	// The archive's index names one image; push its manifest.
	children, err := images.Children(ctx, cs, idx)
	if err != nil || len(children) == 0 {
		t.Fatalf("push: %s names no image (%v)", archivePath, err)
	}
	desc := children[0]
	user, pass := r.User, r.Password
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(docker.MatchAllHosts),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(func(string) (string, string, error) {
			return user, pass, nil
		}))),
	)})
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if err := remotes.PushContent(ctx, pusher, desc, cs, nil, platforms.All, nil); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
