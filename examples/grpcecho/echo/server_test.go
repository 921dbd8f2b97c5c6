package echo

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ebbrun/ebb/examples/grpcecho/echopb"
)

func client(t *testing.T) echopb.EchoClient {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	(&Server{Revision: "fn-00001", Replica: "r1"}).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.Dial("passthrough:///echo", grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return ln.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return echopb.NewEchoClient(cc)
}

func TestEcho(t *testing.T) {
	c := client(t)
	ctx := context.Background()

	r, err := c.Unary(ctx, &echopb.EchoRequest{Message: "hi"})
	require.NoError(t, err)
	assert.Equal(t, "hi", r.Message)
	assert.Equal(t, "fn-00001", r.Revision)
	assert.Equal(t, "r1", r.Replica)

	ss, err := c.ServerStream(ctx, &echopb.EchoRequest{Message: "s", Count: 3})
	require.NoError(t, err)
	for i := range int32(3) {
		r, err := ss.Recv()
		require.NoError(t, err)
		assert.Equal(t, i, r.Index)
	}
	_, err = ss.Recv()
	assert.ErrorIs(t, err, io.EOF)

	cs, err := c.ClientStream(ctx)
	require.NoError(t, err)
	require.NoError(t, cs.Send(&echopb.EchoRequest{Message: "a"}))
	require.NoError(t, cs.Send(&echopb.EchoRequest{Message: "b"}))
	r, err = cs.CloseAndRecv()
	require.NoError(t, err)
	assert.Equal(t, "a,b", r.Message)
	assert.Equal(t, int32(2), r.Index)

	bs, err := c.Bidi(ctx)
	require.NoError(t, err)
	require.NoError(t, bs.Send(&echopb.EchoRequest{Message: "x"}))
	r, err = bs.Recv()
	require.NoError(t, err)
	assert.Equal(t, "x", r.Message)
	require.NoError(t, bs.CloseSend())
	_, err = bs.Recv()
	assert.ErrorIs(t, err, io.EOF)
}

func TestEchoRefusesBadInput(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	for _, req := range []*echopb.EchoRequest{
		{DelayMs: int64(time.Hour / time.Millisecond)},
	} {
		_, err := c.Unary(ctx, req)
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
	}
	s, err := c.ServerStream(ctx, &echopb.EchoRequest{Count: MaxCount + 1})
	require.NoError(t, err)
	_, err = s.Recv()
	assert.Equal(t, codes.InvalidArgument, status.Code(err))

	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = c.Unary(dctx, &echopb.EchoRequest{DelayMs: 10_000})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
}
