// Package ociimage writes and checks OCI image archives, in pure Go.
//
// Build writes a deterministic OCI image layout tar holding one static
// binary: `ebb deploy --binary`, the examples and the tests push what it
// makes. Spool is the gate for untrusted uploads: it copies an OCI layout tar
// or a `docker save` tar (optionally gzipped) to a temp file while checking
// it against Limits and every structural rule, so that only a safe,
// self-consistent archive ever reaches containerd. Limits bound one upload,
// including how far a compressed upload may expand (MaxRatio past
// RatioMinSize, which stops gzip bombs after a few MiB); a SpoolDir bounds
// all the uploads a server takes at once and removes what a killed process
// left behind.
//
// It must not talk to containerd or to the network, and it must never
// extract an archive onto a filesystem: it reads tars, it does not unpack
// them. Importing into containerd is imagestore's job.
package ociimage
