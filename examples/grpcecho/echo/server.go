package echo

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ebbrun/ebb/examples/grpcecho/echopb"
)

// MaxCount bounds ServerStream's responses, and MaxDelay a request's
// delay_ms, so a request cannot make the server work without end.
const (
	MaxCount = 10000
	MaxDelay = 10 * time.Minute
)

// Server answers echopb.Echo; Revision and Replica name it in every answer.
type Server struct {
	echopb.UnimplementedEchoServer
	Revision, Replica string
}

// Register adds s to g.
func (s *Server) Register(g *grpc.Server) { echopb.RegisterEchoServer(g, s) }

func (s *Server) answer(msg string, i int32) *echopb.EchoResponse {
	return &echopb.EchoResponse{Message: msg, Revision: s.Revision, Replica: s.Replica, Index: i}
}

// wait sleeps the request's delay, or returns the status of ctx's end.
func wait(ctx context.Context, req *echopb.EchoRequest) error {
	d := time.Duration(req.GetDelayMs()) * time.Millisecond
	if d <= 0 {
		return nil
	}
	if d > MaxDelay {
		return status.Errorf(codes.InvalidArgument, "delay_ms above %s", MaxDelay)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// Unary implements echopb.EchoServer.
func (s *Server) Unary(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoResponse, error) {
	if err := wait(ctx, req); err != nil {
		return nil, err
	}
	return s.answer(req.GetMessage(), 0), nil
}

// ServerStream implements echopb.EchoServer.
func (s *Server) ServerStream(req *echopb.EchoRequest, stream echopb.Echo_ServerStreamServer) error {
	n := req.GetCount()
	if n <= 0 {
		n = 1
	}
	if n > MaxCount {
		return status.Errorf(codes.InvalidArgument, "count above %d", MaxCount)
	}
	for i := range n {
		if err := wait(stream.Context(), req); err != nil {
			return err
		}
		if err := stream.Send(s.answer(req.GetMessage(), i)); err != nil {
			return err
		}
	}
	return nil
}

// ClientStream implements echopb.EchoServer.
func (s *Server) ClientStream(stream echopb.Echo_ClientStreamServer) error {
	var msgs []string
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(s.answer(strings.Join(msgs, ","), int32(len(msgs))))
		}
		if err != nil {
			return err
		}
		if err := wait(stream.Context(), req); err != nil {
			return err
		}
		msgs = append(msgs, req.GetMessage())
	}
}

// Bidi implements echopb.EchoServer.
func (s *Server) Bidi(stream echopb.Echo_BidiServer) error {
	for i := int32(0); ; i++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := wait(stream.Context(), req); err != nil {
			return err
		}
		if err := stream.Send(s.answer(req.GetMessage(), i)); err != nil {
			return err
		}
	}
}
