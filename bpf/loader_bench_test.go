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

// redirectModes runs f with and without the port allow-listed, and checks
// that the redirect happened exactly when it should.
func redirectModes(b *testing.B, l *Loader, f func(b *testing.B, port int)) {
	for _, mode := range []string{"plain", "redirect"} {
		b.Run(mode, func(b *testing.B) {
			port, stop := echoServer(b)
			defer stop()
			if mode == "redirect" {
				require.NoError(b, l.AllowPort(uint16(port)))
				defer func() { require.NoError(b, l.DisallowPort(uint16(port))) }()
			}
			before := statsOf(b, l)
			f(b, port)
			after := statsOf(b, l)
			redirected := after.MessagesRedirected - before.MessagesRedirected
			if (mode == "redirect") != (redirected > 0) {
				b.Fatalf("%s: %d messages redirected", mode, redirected)
			}
		})
	}
}

func reportPercentiles(b *testing.B, samples []time.Duration, name string) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), name+"-p50-us")
	b.ReportMetric(at(0.99), name+"-p99-us")
}

// BenchmarkTCPPingPong is a 10-byte request and response on one loopback
// connection, through the TCP stack and through the sockmap redirect.
func BenchmarkTCPPingPong(b *testing.B) {
	l := benchLoader(b)
	redirectModes(b, l, func(b *testing.B, port int) {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(b, err)
		defer c.Close()
		msg := make([]byte, 10)
		reply := make([]byte, 10)
		samples := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, reply); err != nil {
				b.Fatal(err)
			}
			samples = append(samples, time.Since(start))
		}
		b.StopTimer()
		reportPercentiles(b, samples, "rtt")
	})
}

// BenchmarkTCPThroughput streams 64 KiB writes over one loopback connection
// and reads them back through the echo server.
func BenchmarkTCPThroughput(b *testing.B) {
	l := benchLoader(b)
	const chunk = 64 * 1024
	redirectModes(b, l, func(b *testing.B, port int) {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(b, err)
		defer c.Close()
		total := int64(b.N) * chunk
		read := make(chan error, 1)
		b.SetBytes(chunk)
		b.ResetTimer()
		go func() {
			buf := make([]byte, 256*1024)
			var err error
			for n := int64(0); n < total && err == nil; {
				var m int
				m, err = c.Read(buf[:min(int64(len(buf)), total-n)])
				n += int64(m)
			}
			read <- err
		}()
		msg := make([]byte, chunk)
		for range b.N {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-read; err != nil {
			b.Fatal(err)
		}
	})
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
