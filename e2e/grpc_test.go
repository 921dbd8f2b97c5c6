package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/examples/grpcecho/echopb"
	"github.com/ebbrun/ebb/internal/testenv"
)

// grpcClient is a real gRPC client of the router for function fn.
func (d *ebbd) grpcClient(fn string) echopb.EchoClient {
	d.t.Helper()
	cc, err := grpc.Dial(d.httpAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(fn+".localhost"))
	require.NoError(d.t, err)
	d.t.Cleanup(func() { _ = cc.Close() })
	return echopb.NewEchoClient(cc)
}

// grpcCall makes one call of each kind, as named, and checks its answers.
func grpcCall(t *testing.T, c echopb.EchoClient, kind string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch kind {
	case "unary":
		r, err := c.Unary(ctx, &echopb.EchoRequest{Message: "hi"})
		require.NoError(t, err)
		assert.Equal(t, "hi", r.Message)
	case "server":
		s, err := c.ServerStream(ctx, &echopb.EchoRequest{Message: "s", Count: 3})
		require.NoError(t, err)
		for i := range int32(3) {
			r, err := s.Recv()
			require.NoError(t, err)
			assert.Equal(t, i, r.Index)
		}
		_, err = s.Recv()
		assert.ErrorIs(t, err, io.EOF)
	case "client":
		s, err := c.ClientStream(ctx)
		require.NoError(t, err)
		for _, m := range []string{"a", "b", "c"} {
			require.NoError(t, s.Send(&echopb.EchoRequest{Message: m}))
		}
		r, err := s.CloseAndRecv()
		require.NoError(t, err)
		assert.Equal(t, "a,b,c", r.Message)
	case "bidi":
		s, err := c.Bidi(ctx)
		require.NoError(t, err)
		for _, m := range []string{"x", "y"} {
			require.NoError(t, s.Send(&echopb.EchoRequest{Message: m}))
			r, err := s.Recv()
			require.NoError(t, err)
			assert.Equal(t, m, r.Message)
		}
		require.NoError(t, s.CloseSend())
		_, err = s.Recv()
		assert.ErrorIs(t, err, io.EOF)
	default:
		t.Fatalf("no call kind %q", kind)
	}
}

// TestGRPC is issue 19's gRPC acceptance, on real containerd: a gRPC
// function (examples/grpcecho, protocol h2c) answers unary calls and all
// three kinds of stream through the router, warm and from zero; a 90/10
// split of calls lands 90 ± 2%; a deadline maps to DEADLINE_EXCEEDED; and
// curl reaches an HTTP function over h2c, by prior knowledge and by
// Upgrade.
func TestGRPC(t *testing.T) {
	d := startEbbd(t)
	d.pushBinary(binaries.grpcecho, "grpcecho:latest")
	d.pushHello()
	kinds := []string{"unary", "server", "client", "bidi"}

	// From zero: one function per kind, so that each kind's first call is
	// the one that wakes its function.
	for _, k := range kinds {
		d.putSpec("cold-"+k, `{"image":"grpcecho:latest","protocol":"h2c","scale":{"initial":0}}`)
	}
	d.putSpec("warm", `{"image":"grpcecho:latest","protocol":"h2c","timeout":"2s","scale":{"min":1}}`)
	for _, k := range kinds {
		d.waitFor("cold-"+k, 30*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })
	}
	for _, k := range kinds {
		t.Run("from zero/"+k, func(t *testing.T) {
			start := time.Now()
			grpcCall(t, d.grpcClient("cold-"+k), k)
			t.Logf("%s from zero in %s", k, time.Since(start).Round(time.Millisecond))
		})
	}
	d.waitFor("warm", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
	warm := d.grpcClient("warm")
	for _, k := range kinds {
		t.Run("warm/"+k, func(t *testing.T) { grpcCall(t, warm, k) })
	}

	t.Run("deadline exceeded", func(t *testing.T) {
		// The client's deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := warm.Unary(ctx, &echopb.EchoRequest{DelayMs: 5000})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		// The function's timeout (2s), for a client that sets none.
		start := time.Now()
		_, err = warm.Unary(context.Background(), &echopb.EchoRequest{DelayMs: 5000})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		assert.Less(t, time.Since(start), 4*time.Second)
	})

	t.Run("90/10 split", func(t *testing.T) {
		d.putSpec("split", `{"image":"grpcecho:latest","protocol":"h2c","scale":{"min":1}}`)
		d.putSpec("split", `{"image":"grpcecho:latest","protocol":"h2c","scale":{"min":1},"env":{"V":"2"}}`)
		var fn api.Function
		require.Equal(t, http.StatusOK, d.apiCall("PUT", "/v1/functions/split/traffic",
			strings.NewReader(`{"traffic":[{"revision":"split-00001","percent":90},{"revision":"split-00002","percent":10}]}`), &fn))
		require.Eventually(t, func() bool {
			var got api.Function
			if d.apiCall("GET", "/v1/functions/split", nil, &got) != http.StatusOK {
				return false
			}
			ready := 0
			for _, r := range got.Revisions {
				if r.Ready > 0 {
					ready++
				}
			}
			return ready == 2
		}, time.Minute, 100*time.Millisecond, "both revisions ready")
		c := d.grpcClient("split")
		// 5,000 calls: the share's standard deviation is 0.42 points, so
		// ±2 points is beyond 4.7 of them.
		const calls = 5000
		counts := map[string]int{}
		for range calls {
			r, err := c.Unary(context.Background(), &echopb.EchoRequest{})
			require.NoError(t, err)
			counts[r.Revision]++
		}
		share := float64(counts["split-00001"]) / calls * 100
		t.Logf("split-00001 got %.2f%% of %d calls (%v)", share, calls, counts)
		assert.InDelta(t, 90, share, 2)
		assert.Equal(t, calls, counts["split-00001"]+counts["split-00002"])
	})

	t.Run("curl over h2c", func(t *testing.T) {
		curl := testenv.RequireBinary(t, "curl")
		d.putSpec("web", `{"image":"hello:latest","scale":{"min":1}}`)
		d.waitFor("web", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		for _, mode := range []string{"--http2-prior-knowledge", "--http2"} {
			out, err := exec.Command(curl, "-sS", mode, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
				"-H", "Host: web.localhost", fmt.Sprintf("http://%s/", d.httpAddr)).CombinedOutput()
			require.NoError(t, err, "%s", out)
			// --http2 asks by Upgrade: h2c, and the answer comes over HTTP/2.
			assert.Equal(t, "200 2", string(out), mode)
		}
	})
}
