package nodeagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// connActivity says how many of a replica's connections carry a request.
//
// Draining must wait for requests in flight but not for the idle keep-alive
// connections that routers hold open, and without a proxy in front of each
// replica the agent sees only sockets. The kernel's tcp_info tells them
// apart: a connection that received data more recently than it sent any is
// waiting for its response, one that sent data in the last streamingWindow
// is still answering, and one with unacknowledged bytes is still delivering
// its answer. Everything else is idle, including a response that sent its
// headers and then paused for longer than streamingWindow: that one relies
// on the SIGTERM that follows, which a well-behaved server answers by
// finishing what it serves.
type connActivity struct {
	Established int
	Busy        int
}

// streamingWindow is how recently a connection must have sent data to count
// as still answering (a streamed response, a large body).
const streamingWindow = 100 * time.Millisecond

// Netlink sock_diag constants not exported by x/sys/unix.
const (
	inetDiagInfo      = 2   // INET_DIAG_INFO: the tcp_info attribute
	tcpEstablished    = 1   // TCP_ESTABLISHED
	sizeofInetDiagReq = 56  // struct inet_diag_req_v2
	sizeofInetDiagMsg = 72  // struct inet_diag_msg
	tcpInfoMinLen     = 60  // through tcpi_last_ack_recv
	tcpInfoSegsLen    = 160 // through tcpi_data_segs_out (Linux 4.6)
)

// replicaConns reports the activity of the established TCP connections
// whose local port is port, in the calling process's network namespace (the
// host's, with host networking).
func replicaConns(port int) (connActivity, error) {
	var total connActivity
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		act, err := diagConns(family, port)
		if err != nil {
			return total, err
		}
		total.Established += act.Established
		total.Busy += act.Busy
	}
	return total, nil
}

func diagConns(family uint8, port int) (connActivity, error) {
	var act connActivity
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return act, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)

	req := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	body := req[unix.SizeofNlMsghdr:]
	body[0] = family
	body[1] = unix.IPPROTO_TCP
	body[2] = 1 << (inetDiagInfo - 1)
	ne.PutUint32(body[4:], 1<<tcpEstablished)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return act, fmt.Errorf("sock_diag request: %w", err)
	}

	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return act, fmt.Errorf("sock_diag read: %w", err)
		}
		done, err := parseDiag(buf[:n], port, &act)
		if err != nil || done {
			return act, err
		}
	}
}

// parseDiag folds one read of netlink messages into act; done reports the
// end of the dump.
func parseDiag(b []byte, port int, act *connActivity) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return true, errors.New("sock_diag: truncated message")
		}
		msg := b[unix.SizeofNlMsghdr:l]
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) >= 4 {
				if errno := int32(ne.Uint32(msg)); errno != 0 {
					return true, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
				}
			}
			return true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) >= sizeofInetDiagMsg {
				// idiag_sport is big-endian at offset 4.
				if int(binary.BigEndian.Uint16(msg[4:])) == port {
					act.Established++
					if busy(tcpInfoAttr(msg[sizeofInetDiagMsg:])) {
						act.Busy++
					}
				}
			}
		}
		b = b[nlAlign(l):]
	}
	return false, nil
}

// tcpInfoAttr finds the tcp_info attribute among the message's rtattrs.
func tcpInfoAttr(attrs []byte) []byte {
	ne := binary.NativeEndian
	for len(attrs) >= 4 {
		l := int(ne.Uint16(attrs[0:]))
		typ := ne.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			return nil
		}
		if typ == inetDiagInfo {
			return attrs[4:l]
		}
		attrs = attrs[nlAlign(l):]
	}
	return nil
}

// busy applies the rule described on connActivity to a raw tcp_info. A
// connection whose info is missing counts as busy: waiting too long is
// safer than cutting a request off.
func busy(info []byte) bool {
	if len(info) < tcpInfoMinLen {
		return true
	}
	ne := binary.NativeEndian
	unacked := ne.Uint32(info[24:])
	lastSent := ne.Uint32(info[44:]) // ms since data was last sent
	lastRecv := ne.Uint32(info[52:]) // ms since data was last received
	switch {
	case unacked > 0, lastRecv < lastSent, time.Duration(lastSent)*time.Millisecond < streamingWindow:
		return true
	case lastRecv == lastSent && len(info) >= tcpInfoSegsLen:
		// The times have jiffy resolution (4ms at HZ=250), so "received
		// after sent" can read as equal. A connection that received data
		// and never sent any is a first request still in flight.
		segsIn, segsOut := ne.Uint32(info[152:]), ne.Uint32(info[156:])
		return segsIn > 0 && segsOut == 0
	}
	return false
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// procEstablished counts established connections on port from
// /proc/{pid}/net/tcp{,6}: the fallback when sock_diag is unavailable.
func procEstablished(pid uint32, port int) (int, error) {
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if errors.Is(err, os.ErrNotExist) && f == "tcp6" {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return 0, fmt.Errorf("read connections: %w", err)
		}
		n += countEstablished(b, port)
	}
	return n, nil
}
