// Command escaper is a function that tries to get out of its replica. On
// GET /escape it makes every attempt the isolation tests name and answers
// with what each one could do, as JSON; the test asserts that none of them
// worked. Each attempt reports "ok" only when the escape succeeded, with
// what it saw, so a replica that is not isolated shows up as ok attempts,
// which the test also checks with isolation off.
//
// Query parameters (all optional; an attempt without its target is not
// made): host (the node's address as the replica sees it, its gateway),
// hostports (comma-separated TCP ports of ebbd on the host: API, metrics,
// router), peer (another replica's ip:port), egress (ip:port of an HTTP
// server outside the node, which must be reachable), vip (a function VIP
// ip:port, which must be reachable), bind (comma-separated ports to take
// and hold, the router's and other replicas').
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// attempt is what one escape attempt could do.
type attempt struct {
	// OK says the escape worked.
	OK bool `json:"ok"`
	// Detail is what it saw: the error that stopped it, or what it got.
	Detail string `json:"detail"`
}

func main() {
	port := os.Getenv("PORT")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "escaper ready") })
	mux.HandleFunc("/escape", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(escape(r.Context(), r.URL.Query().Get))
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "escaper:", err)
		os.Exit(1)
	}
}

// held keeps the listeners of the bind attempt open for the process's
// life, so the test can check that the router and other replicas still
// serve while this replica holds their ports.
var held struct {
	sync.Mutex
	ls []net.Listener
}

func escape(ctx context.Context, q func(string) string) map[string]attempt {
	out := map[string]attempt{}
	host := q("host")
	for _, p := range splitList(q("hostports")) {
		out["loopback:"+p] = dial(ctx, net.JoinHostPort("127.0.0.1", p))
		if host != "" {
			out["node:"+p] = dial(ctx, net.JoinHostPort(host, p))
		}
	}
	if peer := q("peer"); peer != "" {
		out["peer"] = dial(ctx, peer)
	}
	if egress := q("egress"); egress != "" {
		out["egress"] = get(ctx, egress)
	}
	if vip := q("vip"); vip != "" {
		out["vip"] = get(ctx, vip)
	}
	out["write-rootfs"] = result(os.WriteFile("/escaped", []byte("x"), 0o644), "wrote /escaped")
	out["host-environ"] = hostEnviron()
	out["load-module"] = result(unix.InitModule([]byte{}, ""), "init_module accepted")
	out["mount"] = mountTmpfs()
	out["af-packet"] = sniff()
	for _, p := range splitList(q("bind")) {
		out["bind:"+p] = bind(p)
	}
	out["identity"] = identity()
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func result(err error, success string) attempt {
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	return attempt{OK: true, Detail: success}
}

// dial tries a TCP connection; a dropped SYN shows as a timeout.
func dial(ctx context.Context, addr string) attempt {
	d := net.Dialer{Timeout: 700 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	c.Close()
	return attempt{OK: true, Detail: "connected to " + addr}
}

// get makes one HTTP request: the reachable targets (egress, VIP) must
// answer it.
func get(ctx context.Context, addr string) attempt {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return attempt{OK: resp.StatusCode == http.StatusOK, Detail: fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))}
}

// hostEnviron reads /proc/1/environ. In its own pid namespace the replica
// is pid 1, so it reads its own environment (EBB_REPLICA is in it); the
// host's init's is the escape.
func hostEnviron() attempt {
	b, err := os.ReadFile("/proc/1/environ")
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	if strings.Contains(string(b), "EBB_REPLICA="+os.Getenv("EBB_REPLICA")) {
		return attempt{Detail: "pid 1 is this replica itself"}
	}
	return attempt{OK: true, Detail: "read another process's environment: " + strconv.Itoa(len(b)) + " bytes"}
}

func mountTmpfs() attempt {
	dir, err := os.MkdirTemp("", "mnt")
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	err = unix.Mount("tmpfs", dir, "tmpfs", 0, "")
	if err == nil {
		_ = unix.Unmount(dir, 0)
	}
	return result(err, "mounted a tmpfs")
}

// sniff opens an AF_PACKET socket and reads for a while: any frame that is
// not to or from this replica's own address is someone else's traffic.
func sniff() attempt {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return attempt{Detail: "socket(AF_PACKET): " + err.Error()}
	}
	defer unix.Close(fd)
	own := ownAddrs()
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 65536)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if src, dst, ok := ipv4Addrs(buf[:n]); ok && !own[src] && !own[dst] {
			return attempt{OK: true, Detail: fmt.Sprintf("saw traffic %s → %s", src, dst)}
		}
	}
	return attempt{Detail: "the socket opened but saw only this replica's own traffic"}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipv4Addrs reads the addresses of an Ethernet frame carrying IPv4; a
// cooked loopback frame has the same 14-byte header.
func ipv4Addrs(frame []byte) (src, dst string, ok bool) {
	if len(frame) < 34 || frame[12] != 0x08 || frame[13] != 0x00 {
		return "", "", false
	}
	ip := frame[14:]
	return net.IP(ip[12:16]).String(), net.IP(ip[16:20]).String(), true
}

func ownAddrs() map[string]bool {
	own := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			own[n.IP.String()] = true
		}
	}
	return own
}

// bind takes port on every address and holds it.
func bind(port string) attempt {
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return attempt{Detail: err.Error()}
	}
	held.Lock()
	held.ls = append(held.ls, l)
	held.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nhijacked\n")
			c.Close()
		}
	}()
	return attempt{OK: true, Detail: "holding :" + port + " (the test checks whether anyone else lost it)"}
}

// identity reports who the replica runs as; it is not an escape (OK stays
// false) but the test checks the ids, the user namespace's map and the
// capabilities.
func identity() attempt {
	var b strings.Builder
	fmt.Fprintf(&b, "uid=%d gid=%d", os.Getuid(), os.Getgid())
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		fmt.Fprintf(&b, " uid_map=%q", strings.Join(strings.Fields(string(m)), " "))
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return attempt{Detail: errors.Join(errors.New(b.String()), err).Error()}
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.HasPrefix(k, "Cap") {
			fmt.Fprintf(&b, " %s=%s", k, strings.TrimSpace(v))
		}
	}
	return attempt{Detail: b.String()}
}
