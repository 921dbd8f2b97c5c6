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
		wantErr  string
	}{
		{name: "image defaults", rev: rev(api.FunctionSpec{}), img: img,
			wantArgs: []string{"/bin/app", "--serve", "--port", "80"},
			wantEnv:  []string{"PATH=/bin", "MODE=image", "PORT=8080", "EBB_FUNCTION=fn", "EBB_REVISION=fn-00002"}},
		{name: "args replace cmd, env overrides image env, secrets last", img: img,
			rev: rev(api.FunctionSpec{Port: 9000, Args: []string{"--fast"}, Env: map[string]string{"MODE": "spec", "B": "2", "A": "1"},
				Secrets: []api.Secret{{Name: "tok", Value: "v", Env: "MODE"}, {Name: "f", Value: "x", File: "f"}}}),
			wantArgs: []string{"/bin/app", "--serve", "--fast"},
			wantEnv:  []string{"PATH=/bin", "MODE=v", "PORT=9000", "A=1", "B=2", "EBB_FUNCTION=fn", "EBB_REVISION=fn-00002"}},
		{name: "cmd only, default PATH", rev: rev(api.FunctionSpec{}), img: ImageConfig{Cmd: []string{"/app"}}, wantArgs: []string{"/app"},
			wantEnv: []string{"PATH=" + defaultPath, "PORT=8080", "EBB_FUNCTION=fn", "EBB_REVISION=fn-00002"}},
		{name: "args alone", rev: rev(api.FunctionSpec{Args: []string{"/app", "x"}}), img: ImageConfig{}, wantArgs: []string{"/app", "x"},
			wantEnv: []string{"PATH=" + defaultPath, "PORT=8080", "EBB_FUNCTION=fn", "EBB_REVISION=fn-00002"}},
		{name: "nothing to run", rev: rev(api.FunctionSpec{}), img: ImageConfig{}, wantErr: "has no entrypoint or cmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := resolveRevSpec(tt.rev, tt.img)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrBadImage))
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantArgs, rs.args)
			assert.Equal(t, tt.wantEnv, rs.env)
		})
	}

	t.Run("container spec", func(t *testing.T) {
		rs, err := resolveRevSpec(rev(api.FunctionSpec{Resources: api.Resources{CPU: 0.25, Memory: "64Mi", Pids: 32},
			Secrets: []api.Secret{{Name: "f", Value: "x", File: "f"}}}), img)
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
		assert.Equal(t, "/run/secrets-dir", cs.SecretsDir)
		assert.Equal(t, map[string]string{LabelNode: "n1", LabelFunction: "fn", LabelRevision: "fn-00002",
			LabelReplica: "fn-00002-abcde", LabelPort: "20001"}, cs.Labels)
		// No secret files, no mount.
		rs.secretFiles = nil
		assert.Empty(t, rs.containerSpec("n1", "x", 1, "/run/secrets-dir", 1).SecretsDir)
	})
}

func TestWriteSecretFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rev")
	require.NoError(t, writeSecretFiles(dir, map[string]string{"key": "k1", "token": "t"}))
	require.NoError(t, writeSecretFiles(dir, map[string]string{"key": "k2"}))
	b, err := os.ReadFile(filepath.Join(dir, "key"))
	require.NoError(t, err)
	assert.Equal(t, "k2", string(b))
	st, err := os.Stat(filepath.Join(dir, "token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o444), st.Mode().Perm())
	require.NoError(t, writeSecretFiles(filepath.Join(t.TempDir(), "none"), nil))
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
