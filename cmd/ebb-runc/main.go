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
// otherwise becomes runc.
func run(args []string) error {
	// runc start also relays sd_notify readiness when NOTIFY_SOCKET is
	// set; only runc does that.
	if inv, ok := runcstart.Parse(args); ok && os.Getenv("NOTIFY_SOCKET") == "" {
		err := runcstart.Start(inv.Root, inv.ID)
		if err == nil {
			return nil
		}
		if !errors.Is(err, runcstart.ErrNotCreated) {
			logError(inv, err)
			return err
		}
	}
	return execRunc(args)
}

// execRunc replaces this process with the real runc.
func execRunc(args []string) error {
	path := os.Getenv("EBB_RUNC")
	if path == "" {
		p, err := exec.LookPath("runc")
		if err != nil {
			return fmt.Errorf("find runc: %w", err)
		}
		path = p
	}
	argv := append([]string{path}, args...)
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
}

// logError writes err to runc's log as runc would, because that is where
// containerd's shim reads the reason a start failed.
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
