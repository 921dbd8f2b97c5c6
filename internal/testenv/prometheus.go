package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PrometheusServer is a prometheus the test started.
type PrometheusServer struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds its config, its TSDB (data/) and its log (prometheus.log).
	Dir string
}

// Log is what prometheus has logged so far, for a failure message.
func (p *PrometheusServer) Log() string {
	b, err := os.ReadFile(filepath.Join(p.Dir, "prometheus.log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// prometheusStartTimeout bounds how long a fresh prometheus may take to be
// ready: it opens an empty TSDB, which takes well under a second.
const prometheusStartTimeout = 15 * time.Second

// StartPrometheus starts a real prometheus on a free loopback port, with a
// TSDB of its own in a temporary directory, scraping each target
// (host:port, http, /metrics) every second as job "test". It is ready to
// answer queries when StartPrometheus returns, but has scraped nothing yet:
// prometheus hands discovered targets to its scrapers only every 5s, so the
// first scrape comes about 5s after the start; poll for the data. It is
// stopped when the test ends. Without prometheus on
// PATH (make deps-test installs the Debian package) the test skips, or
// fails with EBB_REQUIRE_PRIVILEGED=1.
func StartPrometheus(t testing.TB, targets ...string) *PrometheusServer {
	t.Helper()
	bin := RequireBinary(t, "prometheus")
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		if _, _, err := net.SplitHostPort(target); err != nil {
			t.Fatalf("prometheus target %q: %v", target, err)
		}
		quoted[i] = strconv.Quote(target) // a YAML double-quoted string
	}
	// The timeout must not exceed the 1s interval, and its default is 10s.
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: test
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("prometheus log: %v", err)
	}
	defer logFile.Close() // the child has its own descriptor

	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	// Registered after t.TempDir, so it runs before the directory goes.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	p := &PrometheusServer{URL: "http://" + addr, Dir: dir}
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(prometheusStartTimeout)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus on %s exited at start: %s", addr, log)
		default:
		}
		if resp, err := c.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus on %s not ready within %s: %s", addr, prometheusStartTimeout, log)
		}
		time.Sleep(10 * time.Millisecond) // polling a child process start, not timing a test
	}
}
