// Package secrethash is how ebb keeps and checks the random secrets it
// hands out (API tokens, node credentials): it stores only their hex
// SHA-256 and compares in constant time. The secrets are 256 random bits,
// so a fast hash is enough; there is nothing to stretch. It does no I/O.
package secrethash
