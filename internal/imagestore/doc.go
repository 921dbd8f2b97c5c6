// Package imagestore keeps function images in containerd: it imports
// archives that ociimage.Spool has validated, unpacks them for the
// snapshotter containers use, and lists, checks and deletes them, all in
// ebb's containerd namespace.
//
// An import is all or nothing: everything it writes is held by a lease
// until the image records exist, and on any failure it removes the records
// it made and drops the lease with a synchronous garbage collection, so no
// half-imported image, blob or snapshot stays behind.
//
// It must not validate untrusted archives itself (ociimage does that before
// anything reaches containerd), create containers, or supervise containerd.
package imagestore
