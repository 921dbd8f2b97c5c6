package bpf

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/testenv"
)

// The root tests run their clients in a child process of the test binary,
// started directly inside a cgroup the test creates and attaches the programs
// to, so nothing else on the machine is affected. TestMain turns the binary
// into that child when helperEnv is set.
const (
	helperEnv     = "EBB_BPF_HELPER"
	helperArgsEnv = "EBB_BPF_HELPER_ARGS"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperArgsEnv)))
	}
	os.Exit(m.Run())
}

// helperArgs is what the parent passes to a helper child.
type helperArgs struct {
	URL   string `json:"url,omitempty"`
	Count int    `json:"count,omitempty"`
	Port  int    `json:"port,omitempty"`
	Sizes []int  `json:"sizes,omitempty"`
	// Hold keeps the echo connection open after the exchange until the
	// parent writes a line to stdin, then exchanges once more.
	Hold bool `json:"hold,omitempty"`
	// NewNetns starts the child in a network namespace of its own, with
	// only a loopback interface.
	NewNetns bool `json:"newNetns,omitempty"`
	// Netns runs the child in the named network namespace (ip netns),
	// set up by the parent.
	Netns string `json:"netns,omitempty"`
	// KeepAlive makes http-get reuse one connection for all its requests.
	KeepAlive bool `json:"keepAlive,omitempty"`
}

// helperResult is what a helper child prints as its last line.
type helperResult struct {
	Bodies []string `json:"bodies,omitempty"`
	// Peers are what getpeername(2) returned for each connection.
	Peers []string `json:"peers,omitempty"`
	Error string   `json:"error,omitempty"`
	// Status is OffStatus of Probe in the no-capabilities helper.
	Status string `json:"status,omitempty"`
}

func runHelper(mode, rawArgs string) int {
	var args helperArgs
	if rawArgs != "" {
		if err := json.Unmarshal([]byte(rawArgs), &args); err != nil {
			fmt.Printf("bad helper args: %v\n", err)
			return 2
		}
	}
	var res helperResult
	var err error
	if args.NewNetns {
		err = loopbackUp()
	}
	switch {
	case err != nil:
	case mode == "http-get":
		err = helperHTTPGet(args, &res)
	case mode == "echo":
		err = helperEcho(args)
	case mode == "sendfile":
		err = helperSendfile(args)
	case mode == "unread":
		err = helperUnread(args)
	case mode == "http-serve":
		err = helperHTTPServe()
	case mode == "dial-echo":
		err = helperDialEcho(args)
	case mode == "probe-nocaps":
		err = helperProbeNoCaps(&res)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		res.Error = err.Error()
	}
	out, _ := json.Marshal(res)
	fmt.Printf("%s\n", out)
	if err != nil {
		return 1
	}
	return 0
}

// loopbackUp brings up lo in a fresh network namespace, where it starts down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// helperHTTPGet makes Count GET requests to URL, each on a new connection,
// recording the body and what getpeername says about the connection.
func helperHTTPGet(args helperArgs, res *helperResult) error {
	n := max(args.Count, 1)
	var peer string
	var client *http.Client
	for range n {
		if client != nil && args.KeepAlive {
			if err := httpGetOnce(client, args.URL, &peer, res); err != nil {
				return err
			}
			continue
		}
		tr := &http.Transport{
			DisableKeepAlives: !args.KeepAlive,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				peer, err = getpeername(c.(*net.TCPConn))
				if err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
			},
		}
		client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		if err := httpGetOnce(client, args.URL, &peer, res); err != nil {
			return err
		}
	}
	return nil
}

// httpGetOnce makes one request; *peer is what the dialer saw, read after
// the request has dialed.
func httpGetOnce(client *http.Client, url string, peer *string, res *helperResult) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	res.Bodies = append(res.Bodies, string(body))
	res.Peers = append(res.Peers, *peer)
	return nil
}

// helperHTTPServe stands in for a replica: a dual-stack listener, as a
// function's ":$PORT" gets, whose handler answers "ok" after ?ms=
// milliseconds or when the client goes away. It prints {"port":N} and serves
// until killed.
func helperHTTPServe() error {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	fmt.Printf("{\"port\":%d}\n", ln.Addr().(*net.TCPAddr).Port)
	return srv.Serve(ln)
}

// getpeername asks the kernel directly rather than trusting net.Conn.
func getpeername(c *net.TCPConn) (string, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getpeername(int(fd)) }); err != nil {
		return "", err
	}
	if serr != nil {
		return "", serr
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return "", fmt.Errorf("getpeername: %T", sa)
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", in4.Addr[0], in4.Addr[1], in4.Addr[2], in4.Addr[3], in4.Port), nil
}

// helperEcho listens on 127.0.0.1:Port, connects to it, and checks that each
// payload of Sizes comes back intact through an echo server. Both ends live in
// this process, so both sockets are in the test's cgroup.
func helperEcho(args helperArgs) error {
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", args.Port))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// A plain read/write loop, not io.Copy: io.Copy between two
			// TCP connections uses splice(2), which reads the TCP receive
			// queue directly and never sees redirected data (see doc.go).
			go func() {
				defer c.Close()
				buf := make([]byte, 64*1024)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
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

	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := exchange(c, args.Sizes); err != nil {
		return err
	}
	if !args.Hold {
		return nil
	}
	fmt.Println("holding")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for parent: %w", err)
	}
	return exchange(c, args.Sizes)
}

// helperUnread leaves Sizes[0] bytes unread on a connection, waits for the
// parent, writes as many again, and checks that both arrive in order.
func helperUnread(args helperArgs) error {
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", args.Port))
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- s
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	s, ok := <-accepted
	if !ok {
		return errors.New("accept failed")
	}
	defer s.Close()

	first := bytes.Repeat([]byte{'a'}, args.Sizes[0])
	second := bytes.Repeat([]byte{'b'}, args.Sizes[0])
	if _, err := c.Write(first); err != nil {
		return err
	}
	fmt.Println("holding")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for parent: %w", err)
	}
	go func() { _, _ = c.Write(second) }()
	if err := s.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	got := make([]byte, 2*args.Sizes[0])
	if _, err := io.ReadFull(s, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, append(first, second...)) {
		return errors.New("stream differs")
	}
	return nil
}

// helperDialEcho exchanges Sizes with an echo server the parent runs on
// 127.0.0.1:Port, outside this process's cgroup.
func helperDialEcho(args helperArgs) error {
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", args.Port))
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c, args.Sizes)
}

// helperSendfile serves a file of Sizes[0] bytes with sendfile(2), between
// two plain writes, to a client in the same process that checks the bytes
// arrive complete and in order.
func helperSendfile(args helperArgs) error {
	if len(args.Sizes) != 1 {
		return errors.New("sendfile: want one size")
	}
	payload := make([]byte, args.Sizes[0])
	if _, err := rand.Read(payload); err != nil {
		return err
	}
	f, err := os.CreateTemp("", "ebb-bpf-sendfile-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(payload); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", args.Port))
	if err != nil {
		return err
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write([]byte("head")); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			// *net.TCPConn.ReadFrom(*os.File) is sendfile(2).
			if _, err := c.(*net.TCPConn).ReadFrom(f); err != nil {
				return err
			}
			_, err = c.Write([]byte("tail"))
			return err
		}()
	}()

	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	got := make([]byte, 4+len(payload)+4)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	want := append(append([]byte("head"), payload...), "tail"...)
	if !bytes.Equal(got, want) {
		return errors.New("sendfile stream differs")
	}
	return nil
}

// exchange writes each payload while reading the echo concurrently, so that
// a payload larger than the socket buffers cannot deadlock.
func exchange(c net.Conn, sizes []int) error {
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	for _, n := range sizes {
		want := make([]byte, n)
		if _, err := rand.Read(want); err != nil {
			return err
		}
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(want)
			werr <- err
		}()
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read %d-byte echo: %w", n, err)
		}
		if err := <-werr; err != nil {
			return fmt.Errorf("write %d bytes: %w", n, err)
		}
		if !bytes.Equal(want, got) {
			return fmt.Errorf("%d-byte echo differs", n)
		}
	}
	return nil
}

// helperProbeNoCaps drops every capability of its thread and reports Probe.
func helperProbeNoCaps(res *helperResult) error {
	// Capabilities are per thread; Probe reads them on the calling one.
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	err := Probe(Options{})
	if err == nil {
		return errors.New("probe passed without capabilities")
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		return fmt.Errorf("probe returned %T, want *UnavailableError: %v", err, err)
	}
	res.Status = OffStatus(err)
	return nil
}

// helper is a child process of the test binary running in a cgroup.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr testenv.Buffer
}

// startHelper starts the test binary in mode inside cgroup cg.
func startHelper(t *testing.T, cg, mode string, args helperArgs) *helper {
	t.Helper()
	dir, err := os.Open(cg)
	require.NoError(t, err)
	defer dir.Close()
	raw, err := json.Marshal(args)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	h := &helper{cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^$")}
	if args.Netns != "" {
		// ip enters the namespace before it execs the test binary, so
		// every thread of the child is in it.
		h.cmd = exec.CommandContext(ctx, testenv.RequireBinary(t, "ip"), "netns", "exec", args.Netns, os.Args[0], "-test.run=^$")
	}
	h.cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperArgsEnv+"="+string(raw))
	// CLONE_INTO_CGROUP: the child is in cg from its first instruction.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if args.NewNetns {
		h.cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	h.cmd.Stderr = &h.stderr
	h.stdin, err = h.cmd.StdinPipe()
	require.NoError(t, err)
	out, err := h.cmd.StdoutPipe()
	require.NoError(t, err)
	h.stdout = bufio.NewReader(out)
	require.NoError(t, h.cmd.Start())
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	})
	return h
}

// line reads the helper's next line of output.
func (h *helper) line(t *testing.T) string {
	t.Helper()
	s, err := h.stdout.ReadString('\n')
	require.NoError(t, err, "helper output ended; stderr: %s", h.stderr.String())
	return strings.TrimSpace(s)
}

// result waits for the helper to finish and returns its result.
func (h *helper) result(t *testing.T) helperResult {
	t.Helper()
	last := h.line(t)
	werr := h.cmd.Wait()
	var res helperResult
	require.NoError(t, json.Unmarshal([]byte(last), &res), "helper printed %q; stderr: %s", last, h.stderr.String())
	require.Empty(t, res.Error, "helper failed; stderr: %s", h.stderr.String())
	require.NoError(t, werr, "stderr: %s", h.stderr.String())
	return res
}

// runHelperIn runs a helper to completion in cg.
func runHelperIn(t *testing.T, cg, mode string, args helperArgs) helperResult {
	t.Helper()
	return startHelper(t, cg, mode, args).result(t)
}

// requireBPF skips (or, with EBB_REQUIRE_PRIVILEGED=1, fails) unless the test
// can load eBPF programs.
func requireBPF(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	if err := Probe(Options{}); err != nil {
		testenv.Skip(t, err.Error())
	}
}

// newCgroup creates a child cgroup of the cgroup2 root for the test and
// removes it when the test ends, after its processes have exited.
func newCgroup(t testing.TB) string {
	t.Helper()
	root, err := FindCgroup2()
	if err != nil {
		testenv.Skip(t, err.Error())
	}
	dir, err := os.MkdirTemp(root, "ebb-bpf-test-")
	require.NoError(t, err)
	t.Cleanup(func() {
		// rmdir fails with EBUSY until the last process has left.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
				t.Errorf("remove cgroup %s: %v (procs: %q)", dir, err, procs)
				return
			}
			time.Sleep(5 * time.Millisecond) // polling the kernel, not timing the test
		}
	})
	return dir
}

// loadAt loads the programs attached to a fresh child cgroup and closes them
// when the test ends.
func loadAt(t testing.TB, opts Options) (*Loader, string) {
	t.Helper()
	requireBPF(t)
	cg := newCgroup(t)
	opts.CgroupPath = cg
	l, err := Load(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l, cg
}
