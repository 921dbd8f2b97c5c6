package testenv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FilesContaining walks dirs and returns every regular file whose content
// holds needle: the proof that a secret value reached no disk file of a
// daemon. Directories that do not exist are skipped; files that vanish or
// cannot be read during the walk (sockets, a process's transient files)
// are too.
func FilesContaining(t testing.TB, needle []byte, dirs ...string) []string {
	t.Helper()
	var hits []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
					return nil
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			if bytes.Contains(data, needle) {
				hits = append(hits, p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	return hits
}
