package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// Idle connections must not kill ebbd (hostile load 1). ebbd runs with an
// open-file limit of floodNoFile that it may not raise (prlimit sets it,
// and setpriv takes away CAP_SYS_RESOURCE, which ebbd as root would use to
// lift it), and a client opens twice that many idle connections to the
// router. ebbd stays up; /healthz and the API answer throughout; a newcomer
// to the router is refused with a 503 rather than left hanging; and once
// the idle connections close, the function is served again. Before the
// router's connection cap, accept(2) failed with EMFILE, fasthttp took it
// as fatal, and ebbd exited with "router: serve: accept4: too many open
// files", taking the API and the autoscaler with it.
func TestIdleConnectionFlood(t *testing.T) {
	testenv.RequireBinary(t, "prlimit")
	testenv.RequireBinary(t, "setpriv")
	const floodNoFile = 1024
	d := startEbbdVia(t, []string{
		"prlimit", fmt.Sprintf("--nofile=%d:%d", floodNoFile, floodNoFile), "--",
		"setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--",
	})
	require.Contains(t, d.log.String(), "soft="+strconv.Itoa(floodNoFile), "ebbd kept the limit it was given")
	d.pushHello()
	d.putSpec("hello", `{"image":"hello:latest"}`)
	d.waitFor("hello", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	resp, body := d.get("hello", "/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	routerClient.CloseIdleConnections()

	// rawGet asks the router on a connection of its own; 0 when it gets no
	// answer at all.
	rawGet := func() int {
		c, err := net.DialTimeout("tcp", d.httpAddr, 5*time.Second)
		if err != nil {
			return 0
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n"); err != nil {
			return 0
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	alive := func() {
		t.Helper()
		select {
		case err := <-d.exited:
			d.cmd = nil // nothing left for the cleanup to stop
			t.Fatalf("ebbd exited under the flood: %v\n%s", err, d.log)
		default:
		}
	}

	flood := make([]net.Conn, 0, 2*floodNoFile)
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 2 * floodNoFile {
		c, err := net.DialTimeout("tcp", d.httpAddr, 5*time.Second)
		if err != nil {
			// Most likely ebbd is going down; let it finish saying why.
			select {
			case err := <-d.exited:
				d.cmd = nil
				t.Fatalf("ebbd exited under the flood: %v\n%s", err, d.log)
			case <-time.After(10 * time.Second):
			}
		}
		require.NoError(t, err, "connection %d of the flood\n%s", len(flood)+1, d.log)
		flood = append(flood, c)
	}
	// The router holds as many as its cap allows and refuses the rest,
	// newcomers included. Idle connections are closed after the router's
	// 10s header timeout, so what follows must take less.
	deadline := time.Now().Add(5 * time.Second)
	for rawGet() != http.StatusServiceUnavailable {
		alive()
		require.True(t, time.Now().Before(deadline), "the router never refused a newcomer\n%s", d.log)
		time.Sleep(10 * time.Millisecond) // polling ebbd, another process
	}
	alive()
	health, err := httpClient.Get("http://" + d.apiAddr + "/healthz")
	require.NoError(t, err)
	health.Body.Close()
	assert.Equal(t, http.StatusOK, health.StatusCode, "/healthz answers under the flood")
	var fn api.Function
	assert.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/functions/hello", nil, &fn), "the API answers under the flood")
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	alive()

	for _, c := range flood {
		c.Close()
	}
	flood = flood[:0]
	deadline = time.Now().Add(10 * time.Second)
	for rawGet() != http.StatusOK {
		alive()
		require.True(t, time.Now().Before(deadline), "the router did not serve again after the flood\n%s", d.log)
		time.Sleep(10 * time.Millisecond) // polling ebbd, another process
	}
	alive()
}
