package callbackurl

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckURL(t *testing.T) {
	open, err := Parse("127.0.0.0/8, 10.1.0.0/16,::1,169.254.0.0/16")
	require.NoError(t, err)
	for _, tc := range []struct {
		url          string
		strict, open string // "" passes, else a word of the refusal
	}{
		{"https://hooks.example.com/done", "", ""},
		{"http://203.0.113.7:8080/cb", "", ""},
		{"http://169.254.169.254/latest/meta-data/", "link-local", "link-local"},
		{"http://[fe80::1%25eth0]/", "link-local", "link-local"},
		{"http://[::ffff:169.254.169.254]/", "link-local", "link-local"},
		{"http://0.0.0.0:80/", "unspecified", "unspecified"},
		{"http://[::]/", "unspecified", "unspecified"},
		{"http://224.0.0.1/", "multicast", "multicast"},
		{"http://[ff02::1]/", "multicast", "multicast"},
		{"http://239.1.2.3/", "multicast", "multicast"},
		{"http://255.255.255.255/", "broadcast", "broadcast"},
		{"http://127.0.0.1:9/cb", "loopback", ""},
		{"http://[::1]:9/", "loopback", ""},
		{"http://localhost:8080/", "loopback", ""},
		{"http://api.LOCALHOST./", "loopback", ""},
		{"http://10.1.2.3/", "private", ""},
		{"http://10.2.0.1/", "private", "private"},
		{"http://192.168.1.1/", "private", "private"},
		{"http://[fd00::1]/", "private", "private"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			for _, c := range []struct {
				p    Policy
				want string
			}{{Policy{}, tc.strict}, {open, tc.open}} {
				err := c.p.CheckURL(tc.url)
				if c.want == "" {
					assert.NoError(t, err, "allow %s", c.p)
					continue
				}
				assert.ErrorIs(t, err, ErrRefused, "allow %s", c.p)
				assert.ErrorContains(t, err, c.want, "allow %s", c.p)
			}
		})
	}
}

func TestParse(t *testing.T) {
	p, err := Parse("")
	require.NoError(t, err)
	assert.Empty(t, p.Allow)
	p, err = Parse("10.0.0.7/8,::1")
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0/8,::1/128", p.String())
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,,nope"} {
		_, err := Parse(bad)
		assert.Error(t, err, bad)
	}
}

// Control refuses at dial time, whatever the name resolved to: a name
// that pointed elsewhere at submit cannot reach loopback later.
func TestControlRefusesAtDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	client := func(p Policy) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, Control: p.Control}
		return &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// A resolver that rebinds the callback's name to the server.
			return d.DialContext(ctx, network, srv.Listener.Addr().String())
		}}}
	}
	resp, err := client(Policy{}).Post("http://rebound.example.com/cb", "application/json", nil)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRefused)

	allowed := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	resp, err = client(allowed).Post("http://rebound.example.com/cb", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
