package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/backup"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestBackupRestore backs up a cluster (functions from zero, one with a
// secret, a traffic split, a cron trigger, its image) with `ebb backup
// --with-images`, starts a fresh ebbd (new data dir, new containerd, new
// store; only the secrets key file is carried over), refuses a truncated
// copy with the cluster untouched, restores with `ebb restore`, and checks
// that every function answers 200 and the secret reaches its function. It
// measures the recovery time: from the start of `ebb restore` to the first
// 200 of each function. Once on bbolt, once on Redis.
func TestBackupRestore(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) []string
	}{
		{"embedded", func(*testing.T) []string { return nil }},
		{"redis", func(t *testing.T) []string { return []string{"--store", testenv.Redis(t).URL()} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireE2E(t)
			testBackupRestore(t, tt.store)
		})
	}
}

// backupFunctions is how many functions the cluster holds: the RTO is
// measured on them.
const backupFunctions = 100

func testBackupRestore(t *testing.T, storeArgs func(t *testing.T) []string) {
	// Scheduled backups every second, the newest two kept.
	src := startEbbd(t, append(storeArgs(t), "--backup-interval", "1s", "--backup-keep", "2")...)
	src.pushHello()
	secret := randomValue(t, "backupsecret")
	src.ebb("secrets", "create", "db", "--from-literal", "password="+secret)
	names := make([]string, backupFunctions)
	for i := range names {
		names[i] = fmt.Sprintf("fn-%03d", i)
		spec := `{"image":"hello:latest","scale":{"initial":0}}`
		if i == 0 {
			spec = `{"image":"hello:latest","scale":{"initial":0},"secrets":[{"secret":"db","key":"password","env":"DB_PASSWORD"}]}`
		}
		src.putSpec(names[i], spec)
	}
	src.putSpec("split", `{"image":"hello:latest","scale":{"initial":0},"env":{"V":"1"}}`)
	src.putSpec("split", `{"image":"hello:latest","scale":{"initial":0},"env":{"V":"2"}}`)
	traffic := `{"traffic":[{"revision":"split-00001","percent":50},{"revision":"split-00002","percent":50}]}`
	require.Equal(t, http.StatusOK, src.apiCall("PUT", "/v1/functions/split/traffic", strings.NewReader(traffic), nil))
	src.putCron("fn-001", "nightly", `{"schedule":"0 3 * * *","request":{"path":"/"}}`)
	resp, body := src.get("fn-000", "/env", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "DB_PASSWORD="+secret+"\n")

	file := filepath.Join(t.TempDir(), "cluster.ebbak")
	out := src.ebb("backup", "-o", file, "--with-images")
	t.Logf("%s", strings.TrimSpace(out))
	assert.Contains(t, out, "1 images")
	fi, err := os.Stat(file)
	require.NoError(t, err)
	taken := readBackup(t, file)

	t.Run("scheduled backups catch up", func(t *testing.T) {
		dir := filepath.Join(src.dataDir, "backups")
		deadline := time.Now().Add(30 * time.Second)
		for {
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var newest backup.Header
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".tmp") {
					continue // being written
				}
				require.True(t, strings.HasPrefix(e.Name(), "ebb-backup-") && strings.HasSuffix(e.Name(), ".ebbak"), "only backups: %s", e.Name())
				f, err := os.Open(filepath.Join(dir, e.Name()))
				if errors.Is(err, fs.ErrNotExist) {
					continue // pruned since the listing
				}
				require.NoError(t, err)
				b, err := backup.Read(f, backup.Options{DiscardImages: true})
				f.Close()
				require.NoError(t, err, e.Name())
				newest = b.Header
			}
			if newest.Revision >= taken.Revision {
				assert.Equal(t, taken.Records, newest.Records, "a scheduled backup holds what ebb backup does")
				assert.Zero(t, newest.Images, "without image archives")
				return
			}
			require.True(t, time.Now().Before(deadline), "no scheduled backup reached revision %d", taken.Revision)
			time.Sleep(100 * time.Millisecond) // polling a real system's 1 s schedule
		}
	})

	// The key file is what an operator keeps apart from the backups.
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	key, err := os.ReadFile(filepath.Join(src.dataDir, "secrets.key"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, key, 0o600))
	// Pruning shows only once more backups were written than are kept;
	// on a fast machine the whole set-up above fits in one interval.
	for deadline := time.Now().Add(30 * time.Second); strings.Count(src.log.String(), "scheduled backup written") < 3; {
		require.True(t, time.Now().Before(deadline), "fewer than 3 scheduled backups in 30s:\n%s", linesWith(src.log.String(), "backup"))
		time.Sleep(100 * time.Millisecond) // polling a real system's 1 s schedule
	}
	src.stop(syscall.SIGTERM)
	t.Run("scheduled backups are pruned and leave no temp file", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join(src.dataDir, "backups"))
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		require.Len(t, names, 2, "the newest two: %v; ebbd said:\n%s", names, linesWith(src.log.String(), "backup"))
		for _, name := range names {
			assert.Regexp(t, `^ebb-backup-\d{8}T\d{6}\.\d{3}Z\.ebbak$`, name)
		}
	})

	fresh := startEbbd(t, append(storeArgs(t), "--secrets-key-file", keyFile)...)

	t.Run("a truncated copy is refused and the cluster untouched", func(t *testing.T) {
		whole, err := os.ReadFile(file)
		require.NoError(t, err)
		cut := filepath.Join(t.TempDir(), "cut.ebbak")
		require.NoError(t, os.WriteFile(cut, whole[:len(whole)/2], 0o600))
		_, errOut, code := fresh.ebbExit("restore", cut)
		assert.NotEqual(t, 0, code)
		assert.Contains(t, errOut, "backup is truncated")
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line: %q", errOut)
		var list api.FunctionList
		require.Equal(t, http.StatusOK, fresh.apiCall("GET", "/v1/functions", nil, &list))
		assert.Empty(t, list.Functions)
	})

	began := time.Now()
	out = fresh.ebb("restore", file)
	restored := time.Since(began)
	t.Logf("%s", strings.TrimSpace(out))
	firsts := firstOKs(t, fresh, names, began)
	slices.Sort(firsts)
	t.Logf("RTO of %d functions from zero, %d-byte backup with its image: restore command %s, first 200 after %s, p50 %s, all (p100) %s",
		len(names), fi.Size(), restored.Round(time.Millisecond), firsts[0].Round(time.Millisecond),
		firsts[len(firsts)/2].Round(time.Millisecond), firsts[len(firsts)-1].Round(time.Millisecond))

	resp, body = fresh.get("fn-000", "/env", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "DB_PASSWORD="+secret+"\n", "the sealed secret opens with the key kept apart, and reaches the function")

	seen := map[string]bool{}
	for range 200 {
		resp, body := fresh.get("split", "/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		if m := revisionLine.FindStringSubmatch(body); m != nil {
			seen[m[1]] = true
		}
		if len(seen) == 2 {
			break
		}
	}
	assert.Equal(t, map[string]bool{"split-00001": true, "split-00002": true}, seen, "the traffic split is restored")
	tr := fresh.cron("fn-001", "nightly")
	assert.Equal(t, "0 3 * * *", tr.Schedule)

	_, errOut, code := fresh.ebbExit("restore", file)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "the cluster is not empty")
}

// readBackup reads and verifies a backup file's header.
func readBackup(t *testing.T, path string) backup.Header {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b, err := backup.Read(f, backup.Options{DiscardImages: true})
	require.NoError(t, err, path)
	return b.Header
}

// firstOKs sends requests to every function at once, each until its first
// 200, and returns how long after began each got it.
func firstOKs(t *testing.T, d *ebbd, names []string, began time.Time) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(names))
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(3 * time.Minute)
			for time.Now().Before(deadline) {
				req, err := http.NewRequest("GET", "http://"+d.httpAddr+"/", nil)
				if err != nil {
					errs <- err
					return
				}
				req.Host = name + ".localhost"
				resp, err := routerClient.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						out[i] = time.Since(began)
						return
					}
				}
				time.Sleep(20 * time.Millisecond) // polling a real system until the function is routed
			}
			errs <- fmt.Errorf("%s: no 200 within 3m of the restore", name)
		}()
	}
	wg.Wait()
	close(errs)
	failed := false
	for err := range errs {
		t.Error(err)
		failed = true
	}
	if failed {
		t.FailNow()
	}
	return out
}

// linesWith is the lines of log that mention word, for a failure message.
func linesWith(log, word string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
