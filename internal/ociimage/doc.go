// Package ociimage writes and checks OCI image archives, in pure Go.
//
// Build writes a deterministic OCI image layout tar holding one static
// binary: `ebb deploy --binary`, the examples and the tests push what it
// makes. Spool is the gate for untrusted uploads: it copies an OCI layout tar
// or a `docker save` tar (optionally gzipped) to a temp file while checking
// it against Limits and every structural rule, so that only a safe,
// self-consistent archive ever reaches containerd.
//
// It must not talk to containerd or to the network, and it must never
// extract an archive onto a filesystem: it reads tars, it does not unpack
// them. Importing into containerd is imagestore's job.
package ociimage
