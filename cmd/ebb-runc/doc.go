// Command ebb-runc is the OCI runtime binary that ebb's node agent names in
// containerd's runc shim options (BinaryName). It takes runc's command
// line. A plain "start ID" of a created container it carries out itself
// with runcstart.Start, which saves starting runc on every cold start from
// a pre-created task; every other command, and any start that runc should
// judge (a container that is missing, started or stopped), it hands to the
// real runc by exec, arguments unchanged: EBB_RUNC if containerd's
// environment, which the shim passes on, sets it, else runc on PATH. Its
// errors also go to runc's log, where the shim reads them.
package main
