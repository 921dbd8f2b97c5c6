package envelope

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// ErrUnknownKey says a data key is wrapped under a key-encryption key the
// provider does not hold: one retired by a rotation that re-wrapped the
// record since it was read (read it again), or a wrong key file.
var ErrUnknownKey = errors.New("key-encryption key is not in the keyring")

// Keyring is a KeyProvider over local key-encryption keys: the current one,
// which wraps, and older ones kept after a rotation so that data keys not
// yet re-wrapped still open. A KEK's id is derived from the key itself, so
// nothing else has to be stored to find the key a data key needs.
type Keyring struct {
	current string
	keys    map[string][]byte
}

var _ KeyProvider = (*Keyring)(nil)

// NewKeyring makes a keyring of keys, each KeySize bytes; the first is the
// current one.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("a keyring needs at least one key")
	}
	k := &Keyring{keys: map[string][]byte{}}
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("key %d is %d bytes, want %d", i, len(key), KeySize)
		}
		id := KeyIDOf(key)
		if i == 0 {
			k.current = id
		}
		k.keys[id] = append([]byte(nil), key...)
	}
	return k, nil
}

// KeyIDOf names a KEK: the first 8 bytes of a domain-separated SHA-256 of
// it, in hex. It identifies the key without revealing anything useful.
func KeyIDOf(key []byte) string {
	sum := sha256.Sum256(append([]byte("ebb-kek-id\x00"), key...))
	return "kf-" + hex.EncodeToString(sum[:8])
}

// KeyID implements KeyProvider: the id of the current KEK.
func (k *Keyring) KeyID() string { return k.current }

// KeyIDs lists every KEK id the keyring holds, current first.
func (k *Keyring) KeyIDs() []string {
	ids := []string{k.current}
	for id := range k.keys {
		if id != k.current {
			ids = append(ids, id)
		}
	}
	return ids
}

// Wrap implements KeyProvider: AES-256-GCM under the current KEK, with the
// KEK's id as additional data.
func (k *Keyring) Wrap(dek []byte) (string, []byte, error) {
	if len(dek) != KeySize {
		return "", nil, fmt.Errorf("data key is %d bytes, want %d", len(dek), KeySize)
	}
	wrapped, err := seal(k.keys[k.current], dek, wrapAD(k.current))
	return k.current, wrapped, err
}

// Unwrap implements KeyProvider.
func (k *Keyring) Unwrap(keyID string, wrapped []byte) ([]byte, error) {
	kek, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, keyID)
	}
	return open(kek, wrapped, wrapAD(keyID))
}

// Rotated returns a keyring whose current KEK is next and which still holds
// every key of k, for Rewrap to move data keys from.
func (k *Keyring) Rotated(next []byte) (*Keyring, error) {
	keys := [][]byte{next}
	for _, id := range k.KeyIDs() {
		keys = append(keys, k.keys[id])
	}
	return NewKeyring(keys...)
}

// Current returns a keyring of the current KEK alone, for when every data
// key has been re-wrapped under it.
func (k *Keyring) Current() *Keyring {
	r, _ := NewKeyring(k.keys[k.current]) // the current key is valid by construction
	return r
}

func wrapAD(keyID string) []byte { return []byte("ebb-data-key\x00" + keyID) }

// NewKey returns a random KEK.
func NewKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// A key file is one or more KeySize-byte keys back to back, the current
// one first. One key is the usual case; a rotation writes the new key in
// front of the old ones, re-wraps every data key, then writes the new key
// alone, so a crash halfway leaves a file that opens everything.

// maxKeys bounds a key file, against reading a wrong path's huge file.
const maxKeys = 16

// LoadKeyFile reads a keyring from path. The file must be a regular file
// that only its owner may read (mode 0600 or stricter): a KEK that other
// users can read protects nothing.
func LoadKeyFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open secrets key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat secrets key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets key file %s has mode %04o: it must not be readable by group or others (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeys*KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read secrets key file: %w", err)
	}
	defer clear(data)
	if n := len(data); n == 0 || n%KeySize != 0 || n > maxKeys*KeySize {
		return nil, fmt.Errorf("secrets key file %s is %d bytes: want %d random bytes (one key) or a multiple of them (during a rotation)", path, n, KeySize)
	}
	var keys [][]byte
	for i := 0; i < len(data); i += KeySize {
		keys = append(keys, data[i:i+KeySize])
	}
	return NewKeyring(keys...)
}

// WriteKeyFile writes k's keys to path, current first, with mode 0600,
// atomically (a temporary file renamed over path).
func WriteKeyFile(path string, k *Keyring) error {
	var data []byte
	for _, id := range k.KeyIDs() {
		data = append(data, k.keys[id]...)
	}
	defer clear(data)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return fmt.Errorf("write secrets key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write secrets key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write secrets key file: %w", err)
	}
	return nil
}

// LoadOrCreateKeyFile loads the keyring at path, first writing one fresh
// key there if the file does not exist (ebbd's <data-dir>/secrets.key, made
// at first start like the admin token).
func LoadOrCreateKeyFile(path string) (*Keyring, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		key, err := NewKey()
		if err != nil {
			return nil, err
		}
		k, err := NewKeyring(key)
		clear(key)
		if err != nil {
			return nil, err
		}
		if err := WriteKeyFile(path, k); err != nil {
			return nil, err
		}
	}
	return LoadKeyFile(path)
}

// KeyFile is the KeyProvider ebbd uses: the keyring of a key file, which
// Rotate and Retire change on disk and in memory together. It is safe for
// concurrent use; a rotation never leaves a moment when a data key cannot
// be unwrapped.
type KeyFile struct {
	path string
	mu   sync.Mutex // serialises Rotate and Retire
	ring atomic.Pointer[Keyring]
}

var _ KeyProvider = (*KeyFile)(nil)

// OpenKeyFile loads the key file at path; with create, it first writes a
// fresh key there if there is none.
func OpenKeyFile(path string, create bool) (*KeyFile, error) {
	load := LoadKeyFile
	if create {
		load = LoadOrCreateKeyFile
	}
	ring, err := load(path)
	if err != nil {
		return nil, err
	}
	k := &KeyFile{path: path}
	k.ring.Store(ring)
	return k, nil
}

// KeyID implements KeyProvider.
func (k *KeyFile) KeyID() string { return k.ring.Load().KeyID() }

// KeyIDs lists the ids of the keys in the file, current first.
func (k *KeyFile) KeyIDs() []string { return k.ring.Load().KeyIDs() }

// Wrap implements KeyProvider.
func (k *KeyFile) Wrap(dek []byte) (string, []byte, error) { return k.ring.Load().Wrap(dek) }

// Unwrap implements KeyProvider.
func (k *KeyFile) Unwrap(keyID string, wrapped []byte) ([]byte, error) {
	return k.ring.Load().Unwrap(keyID, wrapped)
}

// Rotate makes a fresh KEK the current one, keeping the old ones so that
// data keys not yet re-wrapped still open. The file is written first: a
// crash after it leaves a file that opens everything.
func (k *KeyFile) Rotate() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	next, err := NewKey()
	if err != nil {
		return "", err
	}
	defer clear(next)
	ring, err := k.ring.Load().Rotated(next)
	if err != nil {
		return "", err
	}
	if err := WriteKeyFile(k.path, ring); err != nil {
		return "", err
	}
	k.ring.Store(ring)
	return ring.KeyID(), nil
}

// Retire drops every key but the current one, once every data key has been
// re-wrapped under it.
func (k *KeyFile) Retire() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	ring := k.ring.Load().Current()
	if err := WriteKeyFile(k.path, ring); err != nil {
		return err
	}
	k.ring.Store(ring)
	return nil
}
