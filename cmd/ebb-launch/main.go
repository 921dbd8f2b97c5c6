package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	path, argv, env, err := plan(os.Args[1:], os.Environ(), os.ReadFile)
	if err == nil {
		err = fmt.Errorf("exec %s: %w", argv[0], syscall.Exec(path, argv, env))
	}
	fmt.Fprintf(os.Stderr, "ebb-launch: %v\n", err)
	// 127 and 126 are what a shell answers for a missing or unrunnable
	// program, which is what the replica's crash report should say.
	if errors.Is(err, fs.ErrNotExist) {
		os.Exit(127)
	}
	os.Exit(126)
}

// plan works out the exec: the program's path, its argv and environment.
// args are ebb-launch's arguments (ENV_FILE PROGRAM [ARG...]).
func plan(args, environ []string, readFile func(string) ([]byte, error)) (string, []string, []string, error) {
	if len(args) < 2 {
		return "", nil, nil, errors.New("usage: ebb-launch ENV_FILE PROGRAM [ARG...]")
	}
	data, err := readFile(args[0])
	if err != nil {
		return "", nil, nil, fmt.Errorf("read secret env: %w", err)
	}
	secret, err := parseEnvFile(data)
	if err != nil {
		return "", nil, nil, fmt.Errorf("secret env %s: %w", args[0], err)
	}
	env := mergeEnv(environ, secret)
	path, err := lookPath(args[1], getenv(env, "PATH"))
	if err != nil {
		return "", nil, nil, err
	}
	return path, args[1:], env, nil
}

// parseEnvFile splits NUL-terminated KEY=VALUE entries. Its errors name
// the entry by position, never by content.
func parseEnvFile(data []byte) ([]string, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != 0 {
		return nil, errors.New("the last entry is not NUL-terminated")
	}
	entries := strings.Split(string(data[:len(data)-1]), "\x00")
	for i, e := range entries {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("entry %d is not KEY=VALUE", i)
		}
	}
	return entries, nil
}

// mergeEnv sets every variable of over in base, replacing one already
// there in place and appending the others in order.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	idx := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

func getenv(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// lookPath finds a program the way runc does: a name with a slash is used
// as it is, any other is searched for in PATH.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, checkExecutable(name)
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH: %w", name, fs.ErrNotExist)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: permission denied", p)
	}
	return nil
}
