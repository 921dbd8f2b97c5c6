package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/nodecred"
	"github.com/ebbrun/ebb/internal/runcstart"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	redisstore "github.com/ebbrun/ebb/store/redis"
)

func randomValue(t *testing.T, prefix string) string {
	var b [12]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return prefix + hex.EncodeToString(b[:])
}

// replicaProcs finds the pids of the running replicas of revision rev by
// their environment, which holds EBB_REVISION=rev.
func replicaProcs(t *testing.T, rev string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte("\x00EBB_REVISION="+rev+"\x00")) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestSecrets runs a function with a secret as an env var and as a file
// through real ebbd and containerd, and greps ebbd's data dir (its store,
// its containerd's root and state, the log rings), runc's state and ebbd's
// log for the values after deploy, restart, rotation under load, an update
// and delete: no value may be on disk in plain text. It runs on both
// stores; on Redis its data dir (with the AOF) is grepped too.
func TestSecrets(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) (args, dirs []string)
	}{
		{"embedded", func(*testing.T) ([]string, []string) { return nil, nil }},
		{"redis", func(t *testing.T) ([]string, []string) {
			r := testenv.Redis(t)
			return []string{"--store", r.URL()}, []string{r.Dir}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireE2E(t)
			args, dirs := tt.store(t)
			testSecrets(t, args, dirs)
		})
	}
}

func testSecrets(t *testing.T, args, storeDirs []string) {
	d := startEbbd(t, args...)
	d.pushHello()
	envValue, fileValue, newValue := randomValue(t, "envsecret"), randomValue(t, "filesecret"), randomValue(t, "newsecret")
	values := [][]byte{[]byte(envValue), []byte(fileValue), []byte(newValue)}
	noValueOnDisk := func(t *testing.T, when string) {
		t.Helper()
		dirs := append([]string{d.dataDir, runcstart.ShimRoot}, storeDirs...)
		// The grep reaches containerd's copy of the spec: it finds what the
		// spec does carry.
		require.NotEmpty(t, testenv.FilesContaining(t, []byte("EBB_FUNCTION=web"), dirs...), "the grep sees containerd's metadata")
		if len(storeDirs) > 0 {
			require.NotEmpty(t, testenv.FilesContaining(t, []byte("web-00001"), storeDirs...), "the grep sees the store's files")
		}
		for _, v := range values {
			assert.Empty(t, testenv.FilesContaining(t, v, dirs...), "%s: a secret value on disk", when)
			assert.NotContains(t, d.log.String(), string(v), "%s: a secret value in ebbd's log", when)
		}
	}

	assert.Contains(t, d.ebb("secrets", "create", "db", "--from-literal", "password="+envValue, "--from-literal", "cert="+fileValue),
		"created secret db in namespace default (keys: cert password)")
	out, errOut, code := d.ebbExit("deploy", "web", "--image", "hello:latest", "--secret", "db:nope=X")
	assert.Equal(t, 4, code, "a missing key is refused at deploy: %s", out)
	assert.Contains(t, errOut, `secret "db" in namespace default has no key "nope"`)
	d.ebb("deploy", "web", "--image", "hello:latest", "--min", "1",
		"--secret", "db:password=DB_PASSWORD", "--secret-file", "db:cert=cert.pem")

	seesSecrets := func(t *testing.T, rev, want string) {
		t.Helper()
		resp, body := d.get("web", "/env", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "DB_PASSWORD="+want+"\n", "the secret as env")
		assert.Contains(t, body, "EBB_REVISION="+rev+"\n")
		pids := replicaProcs(t, rev)
		require.NotEmpty(t, pids, "a replica process of %s", rev)
		p := filepath.Join("/proc", pids[0], "root/run/secrets/cert.pem")
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, fileValue, string(b), "the secret as a file")
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o400), fi.Mode().Perm())
	}

	t.Run("deploy: env and file, nothing on disk", func(t *testing.T) {
		d.waitFor("web", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		seesSecrets(t, "web-00001", envValue)
		noValueOnDisk(t, "after deploy")
		var info api.SecretInfo
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/secrets/db", nil, &info))
		assert.Equal(t, []string{"web"}, info.UsedBy)
		// The node agent's read of the values is in the audit log.
		audit, err := os.ReadFile(filepath.Join(d.dataDir, "audit", "audit.log"))
		require.NoError(t, err)
		assert.Regexp(t, `"namespace":"default","verb":"read-secret","object":"secrets/db","status":200`, string(audit))
	})

	t.Run("restart: adopted, still nothing on disk", func(t *testing.T) {
		d.restart()
		d.waitFor("web", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		seesSecrets(t, "web-00001", envValue)
		noValueOnDisk(t, "after restart")
	})

	t.Run("rotate-key under load: no failed request", func(t *testing.T) {
		hey := testenv.RequireBinary(t, "hey")
		// More secrets, in another namespace too, for a rotation that takes
		// a while.
		d.ebb("namespaces", "create", "team-a")
		for i := range 40 {
			ns := []string{"default", "team-a"}[i%2]
			body := strings.NewReader(`{"stringData":{"k":"v"}}`)
			require.Equal(t, http.StatusCreated, d.apiCall("PUT", "/v1/namespaces/"+ns+"/secrets/extra-"+strconv.Itoa(i), body, nil))
		}
		var (
			wg     sync.WaitGroup
			heyOut string
		)
		served := func() float64 { return d.metricSeriesSum("ebb_router_requests_total", `function="web"`) }
		base := served()
		wg.Add(1)
		go func() {
			defer wg.Done()
			heyOut = runHey(t, hey, "-z", "6s", "-c", "20", "-t", "30", "-host", "web.localhost", "http://"+d.httpAddr+"/")
		}()
		// The rotation starts once the load is flowing.
		deadline := time.Now().Add(10 * time.Second)
		for served() < base+500 {
			require.True(t, time.Now().Before(deadline), "the load does not reach web")
			time.Sleep(20 * time.Millisecond) // polling a real router's metrics
		}
		var before api.SecretInfo
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/secrets/db", nil, &before))
		rotated := d.ebb("secrets", "rotate-key")
		assert.Contains(t, rotated, "re-wrapped 41 secrets")
		wg.Wait()
		assert.Positive(t, heyStatus(heyOut, 200), heyOut)
		assert.NotContains(t, heyOut, "Error distribution", "no request may fail:\n%s", heyOut)
		for _, line := range strings.Split(heyOut, "\n") {
			if strings.Contains(line, "responses") && !strings.Contains(line, "[200]") {
				t.Errorf("a status other than 200: %s", line)
			}
		}
		var after api.SecretInfo
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/secrets/db", nil, &after))
		assert.NotEqual(t, before.KeyID, after.KeyID)
		assert.Contains(t, rotated, after.KeyID)
		noValueOnDisk(t, "after rotation")
	})

	t.Run("an update rolls the function to the new value", func(t *testing.T) {
		d.ebb("secrets", "set", "db", "--from-literal", "password="+newValue)
		d.waitFor("web", 30*time.Second, func(r api.RevisionStatus) bool { return r.Name == "web-00002" && r.Ready >= 1 })
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, body := d.get("web", "/env", nil)
			if strings.Contains(body, "EBB_REVISION=web-00002\n") {
				break
			}
			require.True(t, time.Now().Before(deadline), "web-00002 does not take the traffic")
			time.Sleep(50 * time.Millisecond) // polling a real router's table
		}
		seesSecrets(t, "web-00002", newValue)
		noValueOnDisk(t, "after the update")
	})

	t.Run("delete: nothing left anywhere", func(t *testing.T) {
		_, errOut, code := d.ebbExit("secrets", "delete", "db")
		assert.NotEqual(t, 0, code)
		assert.Contains(t, errOut, "used by [web]")
		d.ebb("delete", "web")
		d.ebb("secrets", "delete", "db")
		deadline := time.Now().Add(30 * time.Second)
		for len(replicaProcs(t, "web-00002")) > 0 || len(replicaProcs(t, "web-00001")) > 0 {
			require.True(t, time.Now().Before(deadline), "web's replicas still run")
			time.Sleep(50 * time.Millisecond) // polling a real node agent
		}
		dirs := append([]string{d.dataDir, runcstart.ShimRoot, "/run/ebb/nodeagent"}, storeDirs...)
		for {
			var hits []string
			for _, v := range values {
				hits = append(hits, testenv.FilesContaining(t, v, dirs...)...)
			}
			if len(hits) == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "secret values left after delete: %v", hits)
			time.Sleep(50 * time.Millisecond) // polling a real node agent's clean-up of its tmpfs
		}
		for _, v := range values {
			assert.NotContains(t, d.log.String(), string(v), "a secret value in ebbd's log")
		}
	})
}

// TestSecretsForRemoteNodeAgents checks the split-role path on Redis: a
// node agent on another machine reads values from the control plane with
// its own node credential (nodeagent.RemoteSecrets, as ebbd's nodeagent
// role does), and the read is an audit line naming its node; a router's
// credential and the admin token get nothing.
func TestSecretsForRemoteNodeAgents(t *testing.T) {
	requireE2E(t)
	redis := testenv.Redis(t)
	cp := startEbbd(t, "--role", "controlplane", "--store", redis.URL(), "--node-name", "cp")
	value := randomValue(t, "remotesecret")
	cp.ebb("secrets", "create", "db", "--from-literal", "password="+value)

	ctx := context.Background()
	st, err := redisstore.Open(ctx, redis.URL(), redisstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	cred := func(node, role string) nodecred.Credential {
		c, err := nodecred.LoadOrCreate(nodecred.Path(shortTempDir(t), role), node, role)
		require.NoError(t, err)
		require.NoError(t, nodecred.Register(ctx, st, c, time.Now()))
		return c
	}
	agent, router := cred("node-7", nodecred.RoleNodeAgent), cred("node-8", nodecred.RoleRouter)

	remote := &nodeagent.RemoteSecrets{BaseURL: "http://" + cp.apiAddr, Token: agent.String(), Client: httpClient}
	data, err := remote.SecretValues(ctx, "default", "db")
	require.NoError(t, err)
	assert.Equal(t, value, string(data["password"]))
	_, err = remote.SecretValues(ctx, "default", "nope")
	assert.ErrorContains(t, err, `secret "nope" does not exist`)

	for name, token := range map[string]string{"router credential": router.String(), "admin token": cp.token()} {
		remote := &nodeagent.RemoteSecrets{BaseURL: "http://" + cp.apiAddr, Token: token, Client: httpClient}
		_, err := remote.SecretValues(ctx, "default", "db")
		assert.ErrorContains(t, err, "node credential of a nodeagent process", name)
	}

	audit, err := os.ReadFile(filepath.Join(cp.dataDir, "audit", "audit.log"))
	require.NoError(t, err)
	assert.Contains(t, string(audit), `"token_id":"node/node-7","namespace":"default","verb":"read-secret","object":"secrets/db","status":200`)
	assert.Contains(t, string(audit), `"token_id":"node/node-7","namespace":"default","verb":"read-secret","object":"secrets/nope","status":404`)
	assert.NotContains(t, string(audit), value)
	assert.Empty(t, testenv.FilesContaining(t, []byte(value), cp.dataDir, redis.Dir), "a secret value on disk")
}
