package harness

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHAProxyTLSConfig(t *testing.T) {
	cfg := haproxyTLSConfig("127.0.0.1:9443", "/tmp/x/haproxy.pem", "10.0.0.2:20000")
	assert.Contains(t, cfg, "    bind 127.0.0.1:9443 ssl crt /tmp/x/haproxy.pem alpn http/1.1 ssl-min-ver TLSv1.2\n")
	assert.Contains(t, cfg, "nbthread 1")
	assert.Contains(t, cfg, "server replica1 10.0.0.2:20000")
}

func TestBenchCert(t *testing.T) {
	dir := t.TempDir()
	crt, err := benchCert(dir, "tls.bench.test")
	require.NoError(t, err)
	_, err = tls.LoadX509KeyPair(filepath.Join(dir, "default.crt"), filepath.Join(dir, "default.key"))
	require.NoError(t, err, "ebbd's pair")
	both, err := os.ReadFile(crt)
	require.NoError(t, err)
	_, err = tls.X509KeyPair(both, both)
	require.NoError(t, err, "HAProxy's one file holds both")
}

func TestTLSResult(t *testing.T) {
	run := func(rps, p99 float64) WrkResult { return WrkResult{RPS: rps, P99: p99} }
	target := func(name string, runs ...WrkResult) *TargetResult {
		tr := &TargetResult{Target: Target{Name: name, Method: name}, Runs: runs}
		tr.summarize()
		return tr
	}
	r := &TLSResult{Rounds: 2, Wrk: "wrk -t2 -c32 -d10s --latency", HandshakeWrk: "wrk … close",
		KeepAlive:  []*TargetResult{target("ebb-tls", run(9000, 4), run(11000, 4)), target("haproxy-tls", run(10000, 5), run(10000, 5)), target("ebb-plain", run(20000, 2), run(20000, 2))},
		Handshakes: []*TargetResult{target("ebb-tls", run(1000, 40), run(1000, 40)), target("haproxy-tls", run(2000, 20), run(2000, 20))},
		Plot:       "tls.png"}
	r.EbbVsHAProxy = SpreadOf(Ratios([]float64{9000, 11000}, []float64{10000, 10000}))
	r.HSEbbVsHAProxy = SpreadOf(Ratios([]float64{1000, 1000}, []float64{2000, 2000}))
	rows := r.Rows()
	require.Len(t, rows, 5)
	assert.Equal(t, "1.00× (0.90×–1.10×) req/s", rows[0].Ratio)
	assert.Equal(t, "HAProxy (TLS, 1 thread)", rows[3].Baseline)
	goals := r.Goals()
	assert.Equal(t, GoalMet, goals[0].Status)
	assert.Equal(t, GoalMissed, goals[1].Status)
	assert.Contains(t, r.Markdown(), "| haproxy-tls (haproxy-tls) |")
}
