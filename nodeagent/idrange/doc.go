// Package idrange hands each tenancy namespace on a node its own range of
// host user and group ids, for the user namespace its replicas run in:
// container id 0..Size-1 is host id HostID..HostID+Size-1.
//
// One range per tenancy namespace, not per function nor per replica: the
// functions of one team share a range, two teams never do, so a process
// that escaped one team's replica is, on the host, an unprivileged user
// that owns nothing of another team's. A range per function would isolate
// functions of the same team from each other too, but the root filesystem
// a user namespace needs is a copy of the image with every owner shifted
// into its range (containerd's remapped snapshot, made once per image and
// range at pool time): 10,000 functions of one image would be 10,000
// copies of it, and 10,000 cold paths paying for one.
//
// The ranges start at host id 2^31 (DefaultBase), far above the ids that
// distributions hand out to users and to rootless containers
// (/etc/subuid), and are 65536 ids wide (DefaultSize), the 16-bit id
// space images assume (nobody is 65534). The table is node-local, kept in
// a file in the node agent's data dir, written whole and atomically
// before a range is handed out, and a range is never handed out twice,
// not even after its namespace is gone: files a replica wrote with its
// ids, in a volume or a leftover snapshot, must never become another
// team's.
//
// The core (table: decode, allocate, encode) is pure; Allocator is the
// thin shell that reads and writes the file.
package idrange
