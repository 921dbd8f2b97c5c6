package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Values of --runc besides a path.
const (
	runcAuto  = "auto"
	runcStock = "runc"
)

// ebbRuncName is the file name make build gives cmd/ebb-runc, beside ebbd.
const ebbRuncName = "ebb-runc"

// runcBinary resolves --runc to the binary the shim should run in place of
// runc, "" for runc itself. exe is ebbd's own path. Auto falls back to
// runc quietly, because ebb-runc only makes starts faster; a path that was
// asked for must be there.
func runcBinary(setting, exe string) (string, error) {
	switch setting {
	case runcStock:
		return "", nil
	case runcAuto:
		p := filepath.Join(filepath.Dir(exe), ebbRuncName)
		if executable(p) {
			return p, nil
		}
		return "", nil
	}
	if !executable(setting) {
		return "", fmt.Errorf("--runc %s: not an executable file", setting)
	}
	return setting, nil
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
