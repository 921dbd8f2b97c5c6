package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the size of data keys and key-encryption keys: AES-256.
const KeySize = 32

// ErrDecrypt is returned for every ciphertext that does not open: a wrong
// key, wrong additional data, tampering or truncation. It says nothing more
// on purpose.
var ErrDecrypt = errors.New("envelope: message authentication failed")

// KeyProvider wraps and unwraps data keys with a key-encryption key it
// holds. Wrap uses the current KEK and says which (KeyID may change
// between two calls during a rotation, so Wrap returns the id it used);
// Unwrap takes the id a data key was wrapped under, which may be an older
// KEK after a rotation. A KMS client can implement it; the KEK never has
// to leave the provider.
type KeyProvider interface {
	KeyID() string
	Wrap(dek []byte) (keyID string, wrapped []byte, err error)
	Unwrap(keyID string, wrapped []byte) ([]byte, error)
}

// Sealed is a secret's data at rest: its data key wrapped under the KEK
// KeyID names, and each value sealed with the data key.
type Sealed struct {
	KeyID      string            `json:"keyId"`
	WrappedKey []byte            `json:"wrappedKey"`
	Values     map[string][]byte `json:"values"`
}

// Seal encrypts data, the key → value map of secret ns/name, under a fresh
// data key that p wraps.
func Seal(p KeyProvider, ns, name string, data map[string][]byte) (Sealed, error) {
	dek := make([]byte, KeySize)
	if _, err := rand.Read(dek); err != nil {
		return Sealed{}, fmt.Errorf("generate data key: %w", err)
	}
	defer clear(dek)
	keyID, wrapped, err := p.Wrap(dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("wrap data key: %w", err)
	}
	s := Sealed{KeyID: keyID, WrappedKey: wrapped, Values: make(map[string][]byte, len(data))}
	for k, v := range data {
		ct, err := seal(dek, v, valueAD(ns, name, k))
		if err != nil {
			return Sealed{}, fmt.Errorf("seal %s: %w", k, err)
		}
		s.Values[k] = ct
	}
	return s, nil
}

// Open decrypts every value of secret ns/name.
func Open(p KeyProvider, ns, name string, s Sealed) (map[string][]byte, error) {
	dek, err := p.Unwrap(s.KeyID, s.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of %s/%s: %w", ns, name, err)
	}
	defer clear(dek)
	if len(dek) != KeySize {
		return nil, fmt.Errorf("unwrap data key of %s/%s: %w", ns, name, ErrDecrypt)
	}
	out := make(map[string][]byte, len(s.Values))
	for k, ct := range s.Values {
		v, err := open(dek, ct, valueAD(ns, name, k))
		if err != nil {
			return nil, fmt.Errorf("open %s/%s key %s: %w", ns, name, k, err)
		}
		out[k] = v
	}
	return out, nil
}

// Rewrap moves s's data key under p's current KEK. The values are not
// touched, so a rotation rewrites one small field per secret. A secret
// already under the current KEK comes back unchanged.
func Rewrap(p KeyProvider, s Sealed) (Sealed, error) {
	if s.KeyID == p.KeyID() {
		return s, nil
	}
	dek, err := p.Unwrap(s.KeyID, s.WrappedKey)
	if err != nil {
		return Sealed{}, fmt.Errorf("unwrap data key: %w", err)
	}
	defer clear(dek)
	keyID, wrapped, err := p.Wrap(dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("wrap data key: %w", err)
	}
	s.KeyID, s.WrappedKey = keyID, wrapped
	return s, nil
}

// valueAD binds a value's ciphertext to the secret and key it belongs to.
// NUL cannot occur in a namespace, secret name or key, so the encoding is
// unambiguous.
func valueAD(ns, name, key string) []byte {
	return []byte("ebb-secret-value\x00" + ns + "\x00" + name + "\x00" + key)
}

// seal is AES-256-GCM with a random 96-bit nonce, returned as
// nonce || ciphertext || tag.
func seal(key, plaintext, ad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

// open reverses seal; any failure is ErrDecrypt.
func open(key, msg, ad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(msg) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, msg[:aead.NonceSize()], msg[aead.NonceSize():], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
