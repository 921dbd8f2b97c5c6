package secrethash

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// Hash is what the store keeps of a secret: its hex SHA-256.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Matches reports, in constant time, whether secret is the one hash was
// made of.
func Matches(hash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(Hash(secret)), []byte(hash)) == 1
}

// IsHex reports whether s is exactly n lowercase hex digits, the form of
// every id and secret ebb makes, so a malformed one is refused before it
// becomes a store key.
func IsHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
