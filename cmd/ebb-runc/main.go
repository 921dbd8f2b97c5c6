package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/internal/runcstart"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ebb-runc: %v\n", err)
		os.Exit(1)
	}
}

// run starts a created container itself when args are a plain start, and
// otherwise becomes runc. Errors go to runc's log too, because that is
// where containerd's shim reads why a command failed.
func run(args []string) error {
	inv, start := runcstart.Parse(args)
	// runc start also relays sd_notify readiness when NOTIFY_SOCKET is
	// set; only runc does that.
	if start && os.Getenv("NOTIFY_SOCKET") == "" {
		err := runcstart.Start(inv.Root, inv.ID)
		if err == nil {
			return nil
		}
		if !errors.Is(err, runcstart.ErrUseRunc) {
			logError(inv, err)
			return err
		}
	}
	err := execRunc(args)
	logError(inv, err)
	return err
}

// execRunc replaces this process with the real runc: EBB_RUNC from the
// environment (containerd's, which the shim passes on), or runc on PATH.
// It returns only on failure.
func execRunc(args []string) error {
	path := os.Getenv("EBB_RUNC")
	if path == "" {
		p, err := exec.LookPath("runc")
		if err != nil {
			return fmt.Errorf("find runc: %w", err)
		}
		path = p
	}
	if isSelf(path) {
		return fmt.Errorf("runc at %s is ebb-runc itself; install runc, or set EBB_RUNC in containerd's environment", path)
	}
	argv := append([]string{path}, args...)
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
}

// isSelf reports whether path is this program, which would exec itself
// for ever.
func isSelf(path string) bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, errA := os.Stat(self)
	b, errB := os.Stat(path)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// logError writes err to runc's log as runc would, a JSON line in
// logrus's shape, when the caller asked for JSON logs.
func logError(inv runcstart.Invocation, err error) {
	if inv.Log == "" || inv.LogFormat != "json" {
		return
	}
	f, openErr := os.OpenFile(inv.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if openErr != nil {
		return
	}
	defer f.Close()
	_ = json.NewEncoder(f).Encode(struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Time  string `json:"time"`
	}{"error", err.Error(), time.Now().Format(time.RFC3339Nano)})
}
