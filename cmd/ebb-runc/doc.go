// Command ebb-runc is the OCI runtime binary that ebb's node agent names in
// containerd's runc shim options (BinaryName). It takes runc's command
// line. A plain "start ID" of a created container it carries out itself
// with runcstart.Start, which saves starting runc on every cold start from
// a pre-created task; every other command it hands to the real runc
// (EBB_RUNC, or "runc" on PATH) by exec, arguments unchanged.
package main
