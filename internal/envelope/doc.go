// Package envelope encrypts secret values at rest with envelope
// encryption: every secret gets its own random 256-bit data key, each of
// its values is sealed with that key by AES-256-GCM, and the data key is
// kept only wrapped by a key-encryption key (KEK) that a KeyProvider holds.
//
// The additional data of every value names the secret's namespace, name and
// key, so a ciphertext copied into another secret, or under another key of
// the same secret, fails to open instead of delivering the wrong value.
// The wrapped data key carries the id of the KEK that wrapped it, so that a
// Keyring holding the new KEK and the old ones can still open secrets
// written before a rotation, and Rewrap can move a data key to the new KEK
// without touching (or even decrypting) the values.
//
// KeyProvider is the seam for an external KMS: the key-file Keyring is the
// only implementation today. The package does no I/O except reading and
// writing key files, and never logs: a value or a key must not reach a log.
package envelope
