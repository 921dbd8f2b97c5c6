package controlplane

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateToken returns the API token stored at path, creating a fresh
// random one with mode 0600 on first start. A token file readable by others
// is refused rather than silently used.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		info, statErr := os.Stat(path)
		if statErr != nil {
			return "", fmt.Errorf("stat token: %w", statErr)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("token file %s has mode %v; it must be readable by its owner only (chmod 600)", path, info.Mode().Perm())
		}
		token := strings.TrimSpace(string(b))
		if len(token) < 16 {
			return "", fmt.Errorf("token file %s holds a token shorter than 16 characters", path)
		}
		return token, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	token := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create token dir: %w", err)
	}
	// Write to a temporary file and rename, so a crash never leaves an empty token.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return token, nil
}
