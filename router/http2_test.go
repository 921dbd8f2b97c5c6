package router

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/examples/grpcecho/echo"
	"github.com/ebbrun/ebb/examples/grpcecho/echopb"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/store"
)

// deployH2C writes a function whose revisions speak h2c, with traffic.
func (e *env) deployH2C(fn string, revs []rev, traffic []api.TrafficTarget) {
	e.t.Helper()
	ops := []store.Op{}
	latest := ""
	for i, r := range revs {
		spec := api.FunctionSpec{Image: "img", Protocol: api.ProtocolH2C}.WithDefaults()
		if r.timeout > 0 {
			spec.Timeout = api.D(r.timeout)
		}
		ops = append(ops, store.PutJSON(store.RevisionKey(fn, r.name), store.Revision{Name: r.name, Function: fn, Generation: i + 1, Spec: spec}, store.AnyVersion))
		latest = r.name
	}
	ops = append(ops, store.PutJSON(store.FunctionKey(fn), store.Function{Name: fn, LatestRevision: latest, Generation: len(revs), Traffic: traffic}, store.AnyVersion))
	_, err := e.st.Txn(context.Background(), ops...)
	require.NoError(e.t, err)
}

// h2Client speaks HTTP/2 with prior knowledge to the router.
func (e *env) h2Client() *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			return e.ln.Dial()
		},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// grpcConn is a gRPC client of the router for host.
func (e *env) grpcConn(host string) echopb.EchoClient {
	e.t.Helper()
	cc, err := grpc.Dial("passthrough:///"+host,
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return e.ln.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(host))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = cc.Close() })
	return echopb.NewEchoClient(cc)
}

// startGRPC serves the echo service on loopback, speaking h2c only.
func startGRPC(t testing.TB, revision string) (addr string, calls *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	calls = new(atomic.Int32)
	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	}), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		calls.Add(1)
		return h(srv, ss)
	}))
	(&echo.Server{Revision: revision, Replica: ln.Addr().String()}).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String(), calls
}

// TestHTTP2PriorKnowledge: an HTTP/2 client gets the same routing as an
// HTTP/1.1 one, to an HTTP/1.1 replica, and HTTP/1.1 still works beside it
// on the same listener.
func TestHTTP2PriorKnowledge(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	b1 := startBackend(t, "one", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Proto", string(ctx.Request.Header.Protocol()))
		ctx.Response.Header.Set("X-Host", string(ctx.Host()))
		ctx.SetBodyString("one")
	})
	b2 := startBackend(t, "two", nil)
	e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, []api.TrafficTarget{
		{Revision: "fn-00001", Percent: 100},
		{Revision: "fn-00002", Percent: 0, Tag: "canary"},
	})
	e.endpoint("fn", "fn-00001", "r1", b1.addr, 0)
	e.endpoint("fn", "fn-00002", "r2", b2.addr, 0)
	e.waitRoute(host("fn"), 1)

	c := e.h2Client()
	resp, err := c.Get("http://" + host("fn") + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "one", string(body))
	assert.Equal(t, "HTTP/1.1", resp.Header.Get("X-Proto"), "an http1 replica is spoken to in HTTP/1.1")
	assert.Equal(t, host("fn"), resp.Header.Get("X-Host"), "the replica sees the client's host")

	// A tag header picks its revision, as over HTTP/1.1.
	req, _ := http.NewRequest("GET", "http://"+host("fn")+"/", nil)
	req.Header.Set("Ebb-Tag", "canary")
	resp, err = c.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "two", string(body))

	resp, err = c.Get("http://nothing.localhost/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)

	code, body1, _ := e.get(host("fn"), "/", nil)
	assert.Equal(t, 200, code)
	assert.Equal(t, "one", body1, "HTTP/1.1 on the same listener")
	assert.Equal(t, float64(3), e.metric("ebb_router_http2_streams_total"))
}

func TestHTTP2Upgrade(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	b := startBackend(t, "one", func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("upgraded " + string(ctx.Path()))
	})
	e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", b.addr, 0)
	e.waitRoute(host("fn"), 1)

	c, err := e.ln.Dial()
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET /path HTTP/1.1\r\nHost: "+host("fn")+"\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	require.NoError(t, err)
	want := string(switchingToH2C)
	got := make([]byte, len(want))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, want, string(got))

	// Now HTTP/2: the preface, and the answer to the request comes as
	// stream 1.
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	require.NoError(t, fr.WriteSettings())
	var status, body string
	for body == "" {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				require.NoError(t, fr.WriteSettingsAck())
			}
		case *http2.MetaHeadersFrame:
			require.Equal(t, uint32(1), f.StreamID)
			status = f.PseudoValue("status")
		case *http2.DataFrame:
			require.Equal(t, uint32(1), f.StreamID)
			body = string(f.Data())
		}
	}
	assert.Equal(t, "200", status)
	assert.Equal(t, "upgraded /path", body)
}

func TestGRPCThroughRouter(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	addr, _ := startGRPC(t, "fn-00001")
	e.deployH2C("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", addr, 0)
	e.waitRoute(host("fn"), 1)
	c := e.grpcConn(host("fn"))
	ctx := context.Background()

	t.Run("unary", func(t *testing.T) {
		resp, err := c.Unary(ctx, &echopb.EchoRequest{Message: "hi"})
		require.NoError(t, err)
		assert.Equal(t, "hi", resp.Message)
		assert.Equal(t, "fn-00001", resp.Revision)
	})
	t.Run("server stream", func(t *testing.T) {
		s, err := c.ServerStream(ctx, &echopb.EchoRequest{Message: "s", Count: 5})
		require.NoError(t, err)
		for i := range int32(5) {
			r, err := s.Recv()
			require.NoError(t, err)
			assert.Equal(t, i, r.Index)
		}
		_, err = s.Recv()
		assert.ErrorIs(t, err, io.EOF)
	})
	t.Run("client stream", func(t *testing.T) {
		s, err := c.ClientStream(ctx)
		require.NoError(t, err)
		for _, m := range []string{"a", "b", "c"} {
			require.NoError(t, s.Send(&echopb.EchoRequest{Message: m}))
		}
		r, err := s.CloseAndRecv()
		require.NoError(t, err)
		assert.Equal(t, "a,b,c", r.Message)
	})
	t.Run("bidi", func(t *testing.T) {
		s, err := c.Bidi(ctx)
		require.NoError(t, err)
		for i, m := range []string{"x", "y", "z"} {
			// Each answer comes before the next request is sent: the
			// router streams both ways, it does not buffer.
			require.NoError(t, s.Send(&echopb.EchoRequest{Message: m}))
			r, err := s.Recv()
			require.NoError(t, err)
			assert.Equal(t, m, r.Message)
			assert.Equal(t, int32(i), r.Index)
		}
		require.NoError(t, s.CloseSend())
		_, err = s.Recv()
		assert.ErrorIs(t, err, io.EOF)
	})
	t.Run("error status and trailers pass through", func(t *testing.T) {
		_, err := c.Unary(ctx, &echopb.EchoRequest{DelayMs: int64(time.Hour / time.Millisecond)})
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
		assert.Contains(t, status.Convert(err).Message(), "delay_ms above")
	})
	t.Run("client deadline", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.Unary(dctx, &echopb.EchoRequest{DelayMs: 10_000})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	})
	t.Run("unknown host", func(t *testing.T) {
		_, err := e.grpcConn("nothing.localhost").Unary(ctx, &echopb.EchoRequest{})
		assert.Equal(t, codes.Unimplemented, status.Code(err))
	})
}

// The function's timeout bounds a call whose client sets none, and maps
// onto DEADLINE_EXCEEDED; a shorter grpc-timeout wins over it.
func TestGRPCFunctionTimeout(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	addr, _ := startGRPC(t, "fn-00001")
	e.deployH2C("fn", []rev{{name: "fn-00001", timeout: 200 * time.Millisecond}}, nil)
	e.endpoint("fn", "fn-00001", "r1", addr, 0)
	e.waitRoute(host("fn"), 1)
	c := e.grpcConn(host("fn"))

	start := time.Now()
	_, err := c.Unary(context.Background(), &echopb.EchoRequest{DelayMs: 10_000})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	assert.Less(t, time.Since(start), 5*time.Second)

	assert.Equal(t, "200000u", grpcTimeout(200*time.Millisecond))
	d, ok := parseGRPCTimeout("1S")
	assert.True(t, ok)
	assert.Equal(t, time.Second, d)
}

// Cancelling a call resets the stream to the replica too.
func TestGRPCCancellationReachesReplica(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	ended := make(chan error, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	echopb.RegisterEchoServer(g, blockingEcho{ended: ended})
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	e.deployH2C("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", ln.Addr().String(), 0)
	e.waitRoute(host("fn"), 1)

	ctx, cancel := context.WithCancel(context.Background())
	s, err := e.grpcConn(host("fn")).Bidi(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&echopb.EchoRequest{Message: "x"}))
	_, err = s.Recv()
	require.NoError(t, err)
	cancel()
	select {
	case err := <-ended:
		assert.Equal(t, codes.Canceled, status.Code(err))
	case <-time.After(10 * time.Second):
		t.Fatal("the replica's stream was not cancelled")
	}
}

// blockingEcho's Bidi answers once, then waits for its stream's end.
type blockingEcho struct {
	echopb.UnimplementedEchoServer
	ended chan error
}

func (b blockingEcho) Bidi(s echopb.Echo_BidiServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	if err := s.Send(&echopb.EchoResponse{Message: "x"}); err != nil {
		return err
	}
	<-s.Context().Done()
	err := status.FromContextError(s.Context().Err()).Err()
	b.ended <- err
	return err
}

// One stream counts as one request against the hard limit: with a limit
// of 1, two concurrent calls on one connection never overlap at the
// replica, and the second waits in the activator.
func TestHTTP2StreamsHonourHardLimit(t *testing.T) {
	act := &fakeStreamActivator{}
	e := newEnv(t, Config{}, Deps{Activator: act})
	var inflight, peak atomic.Int32
	release := make(chan struct{})
	b := startBackend(t, "one", func(ctx *fasthttp.RequestCtx) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
	})
	e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", b.addr, 1)
	e.waitRoute(host("fn"), 1)
	act.set = e.r.table.Load().functions["fn"].targets[0].rev.set

	c := e.h2Client()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Go(func() {
			resp, err := c.Get("http://" + host("fn") + "/")
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	require.Eventually(t, func() bool { return act.waiting.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the second stream waits in the activator")
	close(release)
	wg.Wait()
	assert.Equal(t, []int{200, 200}, codes)
	assert.Equal(t, int32(1), peak.Load())
	assert.Equal(t, float64(1), e.metric("ebb_router_activator_handoffs_total", "default", "fn", "fn-00001"))
}

// fakeStreamActivator waits on the revision's Set for a free replica, as
// the activator does.
type fakeStreamActivator struct {
	set     *replicaset.Set
	waiting atomic.Int32
}

func (a *fakeStreamActivator) Serve(ctx *fasthttp.RequestCtx, _, _ string, _ time.Time) {
	ctx.SetStatusCode(599)
}

func (a *fakeStreamActivator) Acquire(ctx context.Context, _, _ string, _ time.Time) (*replicaset.Replica, func(int), error) {
	w := replicaset.NewWaiter()
	a.set.Enqueue(w)
	a.waiting.Add(1)
	defer a.waiting.Add(-1)
	select {
	case rep := <-w.C:
		return rep, func(int) { a.set.Release(rep) }, nil
	case <-ctx.Done():
		if rep := a.set.Cancel(w); rep != nil {
			a.set.Release(rep)
		}
		return nil, nil, errors.New("gone")
	}
}

func TestGRPCMessage(t *testing.T) {
	assert.Equal(t, "a b%25c%0A%C3%A9", grpcMessage("a b%c\né"))
	for _, bad := range []string{"", "1", "123456789S", "1x", "-1S"} {
		_, ok := parseGRPCTimeout(bad)
		assert.False(t, ok, bad)
	}
	assert.True(t, strings.HasSuffix(grpcTimeout(time.Hour*1000), "S"))
}

// An HTTP/1.1 client reaches a function whose replicas speak h2c only,
// body and answer streamed through the HTTP/2 path.
func TestHTTP1ToH2CReplica(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // and nothing else
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.WriteString(w, "got "+string(body)+" at "+r.Host)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	e.deployH2C("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", ln.Addr().String(), 0)
	e.waitRoute(host("fn"), 1)

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + host("fn") + "/")
	req.Header.SetMethod("POST")
	req.SetBodyString("ping")
	require.NoError(t, e.client.Do(req, resp))
	assert.Equal(t, 200, resp.StatusCode())
	assert.Equal(t, "got ping at "+host("fn"), string(resp.Body()))
	assert.Equal(t, "HTTP/2.0", string(resp.Header.Peek("X-Proto")))
}
