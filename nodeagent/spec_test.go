package nodeagent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func TestResolveRevSpec(t *testing.T) {
	img := ImageConfig{Ref: "img", Entrypoint: []string{"/bin/app", "--serve"}, Cmd: []string{"--port", "80"},
		Env: []string{"PATH=/bin", "MODE=image", "PORT=1"}}
	rev := func(spec api.FunctionSpec) store.Revision {
		spec.Image = "img"
		return store.Revision{Name: "fn-00002", Function: "fn", Generation: 2, Spec: spec, CreatedAt: time.Now()}
	}
	tests := []struct {
		name     string
		rev      store.Revision
		img      ImageConfig
		wantArgs []string
		wantEnv  []string
		// wantSecretEnv are the secret variables, kept out of the spec's env.
		wantSecretEnv []string
		wantErr       string
		notBadImage   bool // a failure that is not the image's
	}{
		{name: "image defaults", rev: rev(api.FunctionSpec{}), img: img,
			wantArgs: []string{"/bin/app", "--serve", "--port", "80"},
			wantEnv:  []string{"PATH=/bin", "MODE=image", "PORT=8080", "EBB_FUNCTION=fn", "EBB_NAMESPACE=default", "EBB_REVISION=fn-00002"}},
		{name: "args replace cmd, env overrides image env, secrets apart (ebb-launch sets them last)", img: img,
			rev: rev(api.FunctionSpec{Port: 9000, Args: []string{"--fast"}, Env: map[string]string{"MODE": "spec", "B": "2", "A": "1"},
				Secrets: []api.Secret{{Secret: "tok", Key: "v", Env: "MODE"}, {Secret: "files", Key: "x", File: "f"},
					{Secret: "tok", Key: "port", Env: "PORT"}, {Secret: "tok", Key: "rev", Env: "EBB_REVISION"}}}),
			wantArgs:      []string{"/bin/app", "--serve", "--fast"},
			wantEnv:       []string{"PATH=/bin", "MODE=spec", "PORT=9000", "A=1", "B=2", "EBB_FUNCTION=fn", "EBB_NAMESPACE=default", "EBB_REVISION=fn-00002"},
			wantSecretEnv: []string{"MODE=v"}},
		{name: "cmd only, default PATH", rev: rev(api.FunctionSpec{}), img: ImageConfig{Cmd: []string{"/app"}}, wantArgs: []string{"/app"},
			wantEnv: []string{"PATH=" + defaultPath, "PORT=8080", "EBB_FUNCTION=fn", "EBB_NAMESPACE=default", "EBB_REVISION=fn-00002"}},
		{name: "args alone", rev: rev(api.FunctionSpec{Args: []string{"/app", "x"}}), img: ImageConfig{}, wantArgs: []string{"/app", "x"},
			wantEnv: []string{"PATH=" + defaultPath, "PORT=8080", "EBB_FUNCTION=fn", "EBB_NAMESPACE=default", "EBB_REVISION=fn-00002"}},
		{name: "a function of another namespace is named as its users name it", img: ImageConfig{Cmd: []string{"/app"}},
			rev:      store.Revision{Name: "fn.team-a-00002", Function: "fn.team-a", Generation: 2, CreatedAt: time.Now()},
			wantArgs: []string{"/app"},
			wantEnv:  []string{"PATH=" + defaultPath, "PORT=8080", "EBB_FUNCTION=fn", "EBB_NAMESPACE=team-a", "EBB_REVISION=fn.team-a-00002"}},
		{name: "nothing to run", rev: rev(api.FunctionSpec{}), img: ImageConfig{}, wantErr: "has no entrypoint or cmd"},
		{name: "missing secret", rev: rev(api.FunctionSpec{Secrets: []api.Secret{{Secret: "gone", Key: "v", Env: "A"}}}), img: img,
			wantErr: `secret "gone" does not exist`, notBadImage: true},
		{name: "missing key", rev: rev(api.FunctionSpec{Secrets: []api.Secret{{Secret: "tok", Key: "nope", Env: "A"}}}), img: img,
			wantErr: `secret "tok" has no key "nope"`, notBadImage: true},
	}
	secrets := map[string]map[string][]byte{
		"tok":   {"v": []byte("v"), "port": []byte("1"), "rev": []byte("r")},
		"files": {"x": []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := resolveRevSpec(tt.rev, tt.img, secrets)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, !tt.notBadImage, errors.Is(err, ErrBadImage))
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantArgs, rs.args)
			assert.Equal(t, tt.wantEnv, rs.env)
			assert.Equal(t, tt.wantSecretEnv, rs.secretEnv)
		})
	}

	t.Run("container spec", func(t *testing.T) {
		rs, err := resolveRevSpec(rev(api.FunctionSpec{Resources: api.Resources{CPU: 0.25, Memory: "64Mi", Pids: 32},
			Secrets: []api.Secret{{Secret: "files", Key: "x", File: "f"}}}), img, secrets)
		require.NoError(t, err)
		cs := rs.containerSpec("n1", "fn-00002-abcde", 20001, "/run/secrets-dir", 8<<20)
		assert.Equal(t, "fn-00002-abcde", cs.ID)
		assert.Contains(t, cs.Env, "PORT=20001")
		assert.NotContains(t, cs.Env, "PORT=8080")
		assert.Contains(t, cs.Env, "EBB_REPLICA=fn-00002-abcde")
		assert.Equal(t, 0.25, cs.CPU)
		assert.Equal(t, int64(64<<20), cs.MemoryBytes)
		assert.Equal(t, int64(32), cs.PidsLimit)
		assert.Equal(t, int64(8<<20), cs.TmpBytes)
		assert.Equal(t, "/run/secrets-dir/files", cs.SecretsDir)
		assert.Empty(t, cs.SecretEnvFile)
		assert.Equal(t, map[string]string{LabelNode: "n1", LabelFunction: "fn", LabelRevision: "fn-00002",
			LabelReplica: "fn-00002-abcde", LabelPort: "20001"}, cs.Labels)
		// No secret files, no mount.
		rs.secretFiles = nil
		assert.Empty(t, rs.containerSpec("n1", "x", 1, "/run/secrets-dir", 1).SecretsDir)
		// Secret variables: a file for ebb-launch, and not a value in the env.
		rs.secretEnv = []string{"DB_PASSWORD=hunter2"}
		cs = rs.containerSpec("n1", "x", 1, "/run/secrets-dir", 1)
		assert.Equal(t, "/run/secrets-dir/env", cs.SecretEnvFile)
		for _, kv := range cs.Env {
			assert.NotContains(t, kv, "hunter2")
		}
	})
}

func TestWriteSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rev")
	require.NoError(t, writeSecrets(dir, map[string]string{"key": "k1", "token": "t"}, []string{"A=1", "B=x\ny"}))
	require.NoError(t, writeSecrets(dir, map[string]string{"key": "k2"}, nil))
	b, err := os.ReadFile(filepath.Join(dir, "files", "key"))
	require.NoError(t, err)
	assert.Equal(t, "k2", string(b))
	b, err = os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err)
	assert.Equal(t, "A=1\x00B=x\ny\x00", string(b), "NUL-terminated entries, for ebb-launch")
	for p, mode := range map[string]os.FileMode{
		"files/token": 0o400, "files/key": 0o400, "env": 0o400, "files": 0o500 | os.ModeDir, ".": 0o700 | os.ModeDir,
	} {
		st, err := os.Stat(filepath.Join(dir, p))
		require.NoError(t, err)
		assert.Equal(t, mode, st.Mode()&(os.ModeDir|os.ModePerm), p)
	}
	none := filepath.Join(t.TempDir(), "none")
	require.NoError(t, writeSecrets(none, nil, nil))
	assert.NoDirExists(t, none)
}

func TestNewReplicaID(t *testing.T) {
	id := newReplicaID("hello-00001")
	assert.Regexp(t, `^hello-00001-[a-z0-9]{5}$`, id)
	// The longest function name still fits containerd's limit whole...
	longest := strings.Repeat("a", 63) + "-00001"
	assert.Regexp(t, "^"+longest+`-[a-z0-9]{5}$`, newReplicaID(longest))
	// ...and anything longer is cut to fit.
	id = newReplicaID(strings.Repeat("b", 80))
	assert.Len(t, id, maxReplicaIDLen)
	assert.Regexp(t, `^b+-[a-z0-9]{5}$`, id)
	assert.NotEqual(t, newReplicaID("x"), newReplicaID("x"))
}
