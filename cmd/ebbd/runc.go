package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Values of --runc besides a path.
const (
	runcAuto  = "auto"
	runcStock = "runc"
)

// ebbRuncName is the file name make build gives cmd/ebb-runc, beside ebbd.
const ebbRuncName = "ebb-runc"

// runcBinary resolves --runc to the binary the shim should run in place of
// runc, "" for runc itself. ebbdPaths are where ebbd was started from, as
// given and then with symlinks resolved: auto takes ebb-runc beside the
// first that has one, so that an install through symlinks records the
// stable path. Auto falls back to runc quietly, because ebb-runc only
// makes starts faster; a path that was asked for must be there.
func runcBinary(setting string, ebbdPaths []string) (string, error) {
	switch setting {
	case runcStock:
		return "", nil
	case runcAuto:
		for _, ebbd := range ebbdPaths {
			if p := filepath.Join(filepath.Dir(ebbd), ebbRuncName); executable(p) {
				return p, nil
			}
		}
		return "", nil
	}
	if !executable(setting) {
		return "", fmt.Errorf("--runc %s: not an executable file", setting)
	}
	return setting, nil
}

// ebbLaunchName is the file name make build gives cmd/ebb-launch, beside
// ebbd.
const ebbLaunchName = "ebb-launch"

// launcherBinary finds ebb-launch beside ebbd, as --runc auto finds
// ebb-runc; "" when it is not there, and then replicas with secret
// environment variables cannot start (their values must not enter the
// OCI spec, which containerd keeps on disk).
func launcherBinary(ebbdPaths []string) string {
	for _, ebbd := range ebbdPaths {
		if p := filepath.Join(filepath.Dir(ebbd), ebbLaunchName); executable(p) {
			return p
		}
	}
	return ""
}

// ebbdPaths are the paths ebbd runs from: the one it was started by (argv[0]
// made absolute, through PATH if need be) and the real file.
func ebbdPaths() []string {
	var paths []string
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		if p, err := exec.LookPath(arg0); err == nil {
			arg0 = p
		}
	}
	if p, err := filepath.Abs(arg0); err == nil {
		paths = append(paths, p)
	}
	if p, err := os.Executable(); err == nil {
		paths = append(paths, p)
	}
	return paths
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// runcLister is the part of the containerd runtime warnMissingRuncBinaries
// reads.
type runcLister interface {
	RuncBinaries(ctx context.Context) (map[string][]string, error)
}

// warnMissingRuncBinaries tells the operator about containers whose shim
// runs a runc binary that is gone: they can be neither stopped nor deleted
// until it is back at its path.
func warnMissingRuncBinaries(ctx context.Context, rt runcLister, log *slog.Logger) {
	binaries, err := rt.RuncBinaries(ctx)
	if err != nil {
		log.Warn("cannot check the runc binaries of existing containers", "err", err)
		return
	}
	for bin, ids := range binaries {
		if !executable(bin) {
			log.Warn("containers whose shim runs a runc binary that is gone cannot be stopped or deleted until it is back",
				"binary", bin, "containers", len(ids), "example", ids[0])
		}
	}
}
