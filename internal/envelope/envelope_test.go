package envelope

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testKeyring(t *testing.T, fill byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(bytes.Repeat([]byte{fill}, KeySize))
	require.NoError(t, err)
	return k
}

func TestSealOpen(t *testing.T) {
	kr := testKeyring(t, 1)
	data := map[string][]byte{"password": []byte("hunter2"), "empty": {}, "big": bytes.Repeat([]byte("x"), 1<<20)}
	s, err := Seal(kr, "team-a", "db", data)
	require.NoError(t, err)
	assert.Equal(t, kr.KeyID(), s.KeyID)
	for k, ct := range s.Values {
		assert.False(t, len(data[k]) > 0 && bytes.Contains(ct, data[k]), "ciphertext of %s holds its value", k)
	}
	got, err := Open(kr, "team-a", "db", s)
	require.NoError(t, err)
	assert.Equal(t, len(data), len(got))
	for k, v := range data {
		assert.True(t, bytes.Equal(v, got[k]), "value of %s", k)
	}

	// Two seals of one value differ: fresh data key and nonce each time.
	s2, err := Seal(kr, "team-a", "db", data)
	require.NoError(t, err)
	assert.NotEqual(t, s.WrappedKey, s2.WrappedKey)
	assert.NotEqual(t, s.Values["password"], s2.Values["password"])
}

func TestOpenRefuses(t *testing.T) {
	kr := testKeyring(t, 1)
	other := testKeyring(t, 2)
	seal := func() Sealed {
		s, err := Seal(kr, "team-a", "db", map[string][]byte{"password": []byte("hunter2"), "user": []byte("admin")})
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name   string
		p      KeyProvider
		ns, sn string
		mutate func(s *Sealed)
	}{
		{name: "flipped value bit", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.Values["password"][14] ^= 1 }},
		{name: "flipped tag bit", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) {
			v := s.Values["password"]
			v[len(v)-1] ^= 0x80
		}},
		{name: "flipped nonce bit", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.Values["password"][0] ^= 1 }},
		{name: "truncated value", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.Values["password"] = s.Values["password"][:20] }},
		{name: "value shorter than a nonce", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.Values["password"] = s.Values["password"][:5] }},
		{name: "empty value ciphertext", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.Values["password"] = nil }},
		{name: "values swapped between keys", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) {
			s.Values["password"], s.Values["user"] = s.Values["user"], s.Values["password"]
		}},
		{name: "other secret name", p: kr, ns: "team-a", sn: "db2"},
		{name: "other namespace", p: kr, ns: "team-b", sn: "db"},
		{name: "wrong key-encryption key", p: other, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.KeyID = other.KeyID() }},
		{name: "unknown key id", p: other, ns: "team-a", sn: "db"},
		{name: "tampered wrapped key", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.WrappedKey[20] ^= 1 }},
		{name: "truncated wrapped key", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.WrappedKey = s.WrappedKey[:len(s.WrappedKey)-1] }},
		{name: "wrapped key under a claimed other id", p: kr, ns: "team-a", sn: "db", mutate: func(s *Sealed) { s.KeyID = "kf-0000000000000000" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := seal()
			if tt.mutate != nil {
				tt.mutate(&s)
			}
			got, err := Open(tt.p, tt.ns, tt.sn, s)
			require.Error(t, err)
			assert.Nil(t, got)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestWrappedKeyBoundToKeyID(t *testing.T) {
	// A data key wrapped under one KEK and relabelled with another id of
	// the same keyring must not open: the id is additional data.
	a, b := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	kr, err := NewKeyring(a, b)
	require.NoError(t, err)
	id, wrapped, err := kr.Wrap(bytes.Repeat([]byte{9}, KeySize))
	require.NoError(t, err)
	assert.Equal(t, KeyIDOf(a), id)
	_, err = kr.Unwrap(KeyIDOf(b), wrapped)
	assert.ErrorIs(t, err, ErrDecrypt)
	dek, err := kr.Unwrap(KeyIDOf(a), wrapped)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{9}, KeySize), dek)
}

func TestRewrap(t *testing.T) {
	old := testKeyring(t, 1)
	s, err := Seal(old, "default", "api", map[string][]byte{"token": []byte("s3cr3t")})
	require.NoError(t, err)

	rotated, err := old.Rotated(bytes.Repeat([]byte{7}, KeySize))
	require.NoError(t, err)
	assert.NotEqual(t, old.KeyID(), rotated.KeyID())
	assert.ElementsMatch(t, []string{rotated.KeyID(), old.KeyID()}, rotated.KeyIDs())

	// Before the re-wrap the rotated keyring still opens the secret.
	got, err := Open(rotated, "default", "api", s)
	require.NoError(t, err)
	assert.Equal(t, "s3cr3t", string(got["token"]))

	r, err := Rewrap(rotated, s)
	require.NoError(t, err)
	assert.Equal(t, rotated.KeyID(), r.KeyID)
	assert.Equal(t, s.Values, r.Values, "a re-wrap must not touch the value ciphertexts")

	// Once re-wrapped, the new key alone opens it, and the old one cannot.
	got, err = Open(rotated.Current(), "default", "api", r)
	require.NoError(t, err)
	assert.Equal(t, "s3cr3t", string(got["token"]))
	_, err = Open(old, "default", "api", r)
	assert.Error(t, err)

	// Re-wrapping under the key already in use changes nothing.
	again, err := Rewrap(rotated, r)
	require.NoError(t, err)
	assert.Equal(t, r, again)

	// A keyring without the old key cannot re-wrap.
	_, err = Rewrap(testKeyring(t, 3), s)
	assert.Error(t, err)
}

func TestNewKeyringRefuses(t *testing.T) {
	_, err := NewKeyring()
	assert.Error(t, err)
	_, err = NewKeyring(make([]byte, 16))
	assert.Error(t, err)
	kr := testKeyring(t, 1)
	_, _, err = kr.Wrap(make([]byte, 16))
	assert.Error(t, err)
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{5}, KeySize)
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
		wantID  string
	}{
		{name: "one key 0600", path: write("ok", key, 0o600), wantID: KeyIDOf(key)},
		{name: "one key 0400", path: write("ro", key, 0o400), wantID: KeyIDOf(key)},
		{name: "two keys, first current", path: write("two", append(bytes.Repeat([]byte{6}, KeySize), key...), 0o600), wantID: KeyIDOf(bytes.Repeat([]byte{6}, KeySize))},
		{name: "group readable", path: write("group", key, 0o640), wantErr: "must not be readable by group or others"},
		{name: "world readable", path: write("world", key, 0o604), wantErr: "must not be readable by group or others"},
		{name: "empty", path: write("empty", nil, 0o600), wantErr: "is 0 bytes"},
		{name: "short", path: write("short", key[:31], 0o600), wantErr: "is 31 bytes"},
		{name: "not a multiple", path: write("odd", append(key, 1), 0o600), wantErr: "is 33 bytes"},
		{name: "missing", path: filepath.Join(dir, "nope"), wantErr: "no such file"},
		{name: "directory", path: dir, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := LoadKeyFile(tt.path)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantID, kr.KeyID())
		})
	}
}

func TestLoadOrCreateKeyFileAndRotationOnDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.key")
	kr, err := LoadOrCreateKeyFile(p)
	require.NoError(t, err)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, int64(KeySize), fi.Size())

	// A second start loads the same key.
	again, err := LoadOrCreateKeyFile(p)
	require.NoError(t, err)
	assert.Equal(t, kr.KeyID(), again.KeyID())

	s, err := Seal(kr, "default", "x", map[string][]byte{"k": []byte("v")})
	require.NoError(t, err)

	// A rotation writes new+old, re-wraps, then writes the new key alone.
	next, err := NewKey()
	require.NoError(t, err)
	rotated, err := kr.Rotated(next)
	require.NoError(t, err)
	require.NoError(t, WriteKeyFile(p, rotated))
	mid, err := LoadKeyFile(p)
	require.NoError(t, err)
	assert.Equal(t, rotated.KeyID(), mid.KeyID())
	_, err = Open(mid, "default", "x", s) // a crash here still opens everything
	require.NoError(t, err)
	s, err = Rewrap(mid, s)
	require.NoError(t, err)
	require.NoError(t, WriteKeyFile(p, mid.Current()))
	final, err := LoadKeyFile(p)
	require.NoError(t, err)
	assert.Equal(t, []string{rotated.KeyID()}, final.KeyIDs())
	got, err := Open(final, "default", "x", s)
	require.NoError(t, err)
	assert.Equal(t, "v", string(got["k"]))
}

func TestKeyFileRotateRetire(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.key")
	_, err := OpenKeyFile(p, false)
	require.Error(t, err, "without create, a missing file is an error")
	kf, err := OpenKeyFile(p, true)
	require.NoError(t, err)
	first := kf.KeyID()
	s, err := Seal(kf, "default", "db", map[string][]byte{"pw": []byte("hunter2")})
	require.NoError(t, err)

	second, err := kf.Rotate()
	require.NoError(t, err)
	assert.NotEqual(t, first, second)
	assert.Equal(t, []string{second, first}, kf.KeyIDs())
	_, err = Open(kf, "default", "db", s)
	require.NoError(t, err, "old data keys open during the rotation")
	reopened, err := OpenKeyFile(p, false)
	require.NoError(t, err)
	assert.Equal(t, []string{second, first}, reopened.KeyIDs(), "the file holds both until Retire")

	s, err = Rewrap(kf, s)
	require.NoError(t, err)
	require.NoError(t, kf.Retire())
	assert.Equal(t, []string{second}, kf.KeyIDs())
	got, err := Open(kf, "default", "db", s)
	require.NoError(t, err)
	assert.Equal(t, "hunter2", string(got["pw"]))
	reopened, err = OpenKeyFile(p, false)
	require.NoError(t, err)
	assert.Equal(t, []string{second}, reopened.KeyIDs())
}
