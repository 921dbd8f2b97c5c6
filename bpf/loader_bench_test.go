package bpf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The benchmarks need both ends of each connection in the cgroup the
// programs are attached to, so they move the whole test process into a child
// cgroup for their duration (the tests use child processes instead).

// joinCgroup moves this process into cg until the benchmark ends.
func joinCgroup(b *testing.B, cg string) {
	b.Helper()
	root, err := FindCgroup2()
	require.NoError(b, err)
	orig, err := currentCgroup2()
	require.NoError(b, err)
	pid := []byte(strconv.Itoa(os.Getpid()))
	require.NoError(b, os.WriteFile(filepath.Join(cg, "cgroup.procs"), pid, 0))
	b.Cleanup(func() {
		require.NoError(b, os.WriteFile(filepath.Join(root, orig, "cgroup.procs"), pid, 0))
	})
}

// currentCgroup2 is this process's cgroup2 path relative to the mount.
func currentCgroup2() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup2 entry in /proc/self/cgroup")
}

// benchLoader loads the programs at a child cgroup this process joins.
func benchLoader(b *testing.B) *Loader {
	b.Helper()
	l, cg := loadAt(b, Options{})
	joinCgroup(b, cg)
	return l
}

// echoServer answers every read with the same bytes, with a plain
// read/write loop (see helperEcho for why not io.Copy).
func echoServer(b *testing.B) (port int, stop func()) {
	b.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(b, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256*1024)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() { ln.Close() }
}

func reportPercentiles(b *testing.B, samples []time.Duration, name string) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	at := func(q float64) time.Duration { return samples[int(q*float64(len(samples)-1))] }
	b.ReportMetric(float64(at(0.50).Nanoseconds())/1e3, name+"-p50-us")
	b.ReportMetric(float64(at(0.99).Nanoseconds())/1e3, name+"-p99-us")
	return at(0.50)
}

// pinger does round trips of one message size over one connection to an
// echo server.
type pinger struct {
	c       net.Conn
	msg     []byte
	reply   []byte
	write   chan struct{}
	written chan error
	samples []time.Duration
	total   time.Duration
}

func newPinger(b *testing.B, port, size int) *pinger {
	b.Helper()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(b, err)
	p := &pinger{
		c:       c,
		msg:     make([]byte, size),
		reply:   make([]byte, size),
		write:   make(chan struct{}),
		written: make(chan error),
	}
	// A message larger than the socket buffers must be read while it is
	// written, so a long-lived goroutine writes.
	go func() {
		for range p.write {
			_, err := c.Write(p.msg)
			p.written <- err
		}
	}()
	b.Cleanup(func() {
		close(p.write)
		c.Close()
	})
	return p
}

// inlineWrite is the largest message written on the benchmark's goroutine;
// it fits the default socket buffers, and skips the handoff to the writer.
const inlineWrite = 64 << 10

func (p *pinger) roundTrip(b *testing.B) {
	start := time.Now()
	if len(p.msg) <= inlineWrite {
		if _, err := p.c.Write(p.msg); err != nil {
			b.Fatal(err)
		}
	} else {
		p.write <- struct{}{}
	}
	if _, err := io.ReadFull(p.c, p.reply); err != nil {
		b.Fatal(err)
	}
	if len(p.msg) > inlineWrite {
		if err := <-p.written; err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(start)
	p.samples = append(p.samples, d)
	p.total += d
}

// BenchmarkTCPPingPong sends a message to an echo server and reads it back,
// over loopback TCP and over the sockmap redirect, alternating the two on
// every iteration so that both see the same machine noise. It reports each
// path's round-trip percentiles and throughput (bytes each way per second of
// round trips), and the redirect's p50 as a ratio of plain.
func BenchmarkTCPPingPong(b *testing.B) {
	l := benchLoader(b)
	for _, size := range []int{10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			plainPort, stopPlain := echoServer(b)
			defer stopPlain()
			redirPort, stopRedir := echoServer(b)
			defer stopRedir()
			require.NoError(b, l.AllowPort(uint16(redirPort)))
			defer func() { require.NoError(b, l.DisallowPort(uint16(redirPort))) }()
			// A replica's port is also tracked: every send on it is
			// accounted (see PortLoad). That must cost next to nothing.
			trackedPort, stopTracked := echoServer(b)
			defer stopTracked()
			require.NoError(b, l.AllowPort(uint16(trackedPort)))
			require.NoError(b, l.TrackPort(uint16(trackedPort)))
			defer func() {
				require.NoError(b, l.UntrackPort(uint16(trackedPort)))
				require.NoError(b, l.DisallowPort(uint16(trackedPort)))
			}()

			before := statsOf(b, l)
			plain := newPinger(b, plainPort, size)
			redir := newPinger(b, redirPort, size)
			tracked := newPinger(b, trackedPort, size)
			paths := []*pinger{plain, redir, tracked}
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// Rotate which goes first, too.
				for j := range paths {
					paths[(i+j)%len(paths)].roundTrip(b)
				}
			}
			b.StopTimer()

			after := statsOf(b, l)
			if n := after.SocketsInserted - before.SocketsInserted; n != 4 {
				b.Fatalf("%d sockets mapped, want the two redirected pairs only", n)
			}
			if want := uint64(b.N) * uint64(4*size); after.BytesRedirected-before.BytesRedirected != want {
				b.Fatalf("%d bytes redirected, want %d", after.BytesRedirected-before.BytesRedirected, want)
			}
			p50Plain := reportPercentiles(b, plain.samples, "plain")
			p50Redir := reportPercentiles(b, redir.samples, "redirect")
			p50Tracked := reportPercentiles(b, tracked.samples, "tracked")
			b.ReportMetric(float64(p50Redir)/float64(p50Plain), "redirect/plain-p50")
			b.ReportMetric(float64(p50Tracked)/float64(p50Redir), "tracked/redirect-p50")
			mbps := func(p *pinger) float64 { return float64(b.N*size) / p.total.Seconds() / 1e6 }
			b.ReportMetric(mbps(plain), "plain-MB/s")
			b.ReportMetric(mbps(redir), "redirect-MB/s")
			b.ReportMetric(mbps(tracked), "tracked-MB/s")
		})
	}
}

// BenchmarkConnectToWake is the time from calling connect() on a cold VIP to
// the wake event reaching a Go callback, the head start the node agent gets
// on starting a replica.
func BenchmarkConnectToWake(b *testing.B) {
	l := benchLoader(b)
	vip := netip.MustParseAddrPort("127.77.0.1:80")
	require.NoError(b, l.SetVIP(VIP{Addr: vip, FunctionID: 1}))
	act, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(b, err)
	defer act.Close()
	go func() {
		for {
			c, err := act.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	require.NoError(b, l.SetFallback(netip.MustParseAddrPort(act.Addr().String())))

	type wake struct {
		ev WakeEvent
		at time.Duration
	}
	woke := make(chan wake, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.RunWakeEvents(ctx, func(ev WakeEvent) { woke <- wake{ev, monotonicNow()} })
	}()
	defer func() {
		cancel()
		require.NoError(b, <-done)
	}()

	toWake := make([]time.Duration, 0, b.N)
	kernelToReader := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := monotonicNow()
		c, err := net.Dial("tcp4", vip.String())
		if err != nil {
			b.Fatal(err)
		}
		w := <-woke
		c.Close()
		toWake = append(toWake, w.at-start)
		kernelToReader = append(kernelToReader, w.at-w.ev.KernelTime)
	}
	b.StopTimer()
	reportPercentiles(b, toWake, "connect-to-wake")
	reportPercentiles(b, kernelToReader, "bpf-to-reader")
	if s := statsOf(b, l); s.WakesDropped != 0 {
		b.Fatalf("%d wake events dropped", s.WakesDropped)
	}
}
