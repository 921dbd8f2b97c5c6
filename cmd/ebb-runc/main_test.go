package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/runcstart"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestAgainstRunc drives ebb-runc the way containerd's shim does, over
// containers that the installed runc creates, and checks with runc that
// what it did is what runc start would have done.
func TestAgainstRunc(t *testing.T) {
	testenv.RequireRoot(t)
	runc := testenv.RequireBinary(t, "runc")
	bin := t.TempDir()
	ebbRunc, hello := filepath.Join(bin, "ebb-runc"), filepath.Join(bin, "hello")
	testenv.RequireBinary(t, "go")
	require.NoError(t, testenv.GoBuild(ebbRunc, ".", "CGO_ENABLED=0"))
	require.NoError(t, testenv.GoBuild(hello, "../../examples/hello", "CGO_ENABLED=0"))
	root := t.TempDir() // runc's state directory, as the shim's --root
	logFile := filepath.Join(t.TempDir(), "log.json")
	// shimWith runs ebb-runc as the shim does, with EBB_RUNC set to runcPath.
	shimWith := func(runcPath string, args ...string) (string, error) {
		all := append([]string{"--root", root, "--log", logFile, "--log-format", "json"}, args...)
		cmd := exec.Command(ebbRunc, all...)
		cmd.Env = append(os.Environ(), "EBB_RUNC="+runcPath)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	shim := func(args ...string) (string, error) { return shimWith(runc, args...) }
	lastLogLine := func() string {
		data, err := os.ReadFile(logFile)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		return lines[len(lines)-1]
	}

	t.Run("start runs the created container", func(t *testing.T) {
		port := testenv.FreePort(t)
		id := createContainer(t, runc, root, hello, port)

		// With runc out of reach, only ebb-runc itself can have started it.
		out, err := shimWith("/bin/false", "start", id)
		require.NoError(t, err, out)

		assert.Equal(t, "running", runcStatus(t, runc, root, id))
		assert.NoFileExists(t, filepath.Join(root, id, "exec.fifo"))
		testenv.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 10*time.Second)
		out, err = shim("start", id)
		require.Error(t, err, "a second start goes to runc, which refuses it")
		assert.Contains(t, out, "cannot start an already running container")
	})

	t.Run("start confirms a released container, once", func(t *testing.T) {
		port := testenv.FreePort(t)
		id := createContainer(t, runc, root, hello, port)
		require.NoError(t, runcstart.Release(root, id))
		testenv.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 10*time.Second)
		assert.Equal(t, "running", runcStatus(t, runc, root, id), "runc sees it run")

		out, err := shimWith("/bin/false", "start", id)
		require.NoError(t, err, out)

		out, err = shim("start", id)
		require.Error(t, err, "a second start goes to runc, which refuses it")
		assert.Contains(t, out, "cannot start an already running container")
	})

	t.Run("other commands reach runc", func(t *testing.T) {
		id := createContainer(t, runc, root, hello, testenv.FreePort(t))
		out, err := shim("state", id)
		require.NoError(t, err, out)
		assert.Contains(t, out, `"status": "created"`)
		_, err = shim("delete", "--force", id)
		require.NoError(t, err)
		assert.NoDirExists(t, filepath.Join(root, id))
	})

	t.Run("a start runc must refuse goes to runc, which says why in its log", func(t *testing.T) {
		id := createContainer(t, runc, root, hello, testenv.FreePort(t))
		pid := runcPid(t, runc, root, id)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		// Polls because the kernel must finish the kill before runc can see
		// the container stopped; under load that is not instant.
		require.Eventually(t, func() bool { return runcStatus(t, runc, root, id) == "stopped" },
			10*time.Second, 5*time.Millisecond)

		_, err := shim("start", id)
		require.Error(t, err)

		assert.Contains(t, lastLogLine(), "cannot start a container that has stopped")
	})

	t.Run("a runc that is ebb-runc itself is refused, not exec'd for ever", func(t *testing.T) {
		out, err := shimWith(ebbRunc, "state", "any")
		require.Error(t, err)
		assert.Contains(t, out, "is ebb-runc itself")
		assert.Contains(t, lastLogLine(), `"level":"error","msg":"runc at `+ebbRunc+` is ebb-runc itself`)
	})
}

// createContainer has runc create a container running hello on port with
// the host's network, in a bundle of its own, and deletes it at cleanup.
func createContainer(t *testing.T, runc, root, hello string, port int) string {
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	require.NoError(t, os.MkdirAll(rootfs, 0o755))
	data, err := os.ReadFile(hello)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(rootfs, "hello"), data, 0o755))
	out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput()
	require.NoError(t, err, string(out))

	var spec map[string]any
	specFile := filepath.Join(bundle, "config.json")
	data, err = os.ReadFile(specFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &spec))
	process := spec["process"].(map[string]any)
	process["args"] = []string{"/hello"}
	process["terminal"] = false
	process["env"] = append(process["env"].([]any), "PORT="+strconv.Itoa(port))
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	data, err = json.Marshal(spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(specFile, data, 0o644))

	id := fmt.Sprintf("ebb-runc-test-%d", time.Now().UnixNano())
	// The container inherits runc's standard output and error, so they
	// go to a file: a pipe would stay open as long as the container runs.
	outFile, err := os.Create(filepath.Join(bundle, "create.out"))
	require.NoError(t, err)
	defer outFile.Close()
	create := exec.Command(runc, "--root", root, "create", "--bundle", bundle, id)
	create.Stdout, create.Stderr = outFile, outFile
	err = create.Run()
	out, _ = os.ReadFile(outFile.Name())
	require.NoError(t, err, string(out))
	t.Cleanup(func() { _ = exec.Command(runc, "--root", root, "delete", "--force", id).Run() })
	return id
}

func runcState(t *testing.T, runc, root, id string) map[string]any {
	t.Helper()
	out, err := exec.Command(runc, "--root", root, "state", id).Output()
	require.NoError(t, err)
	var state map[string]any
	require.NoError(t, json.Unmarshal(out, &state))
	return state
}

func runcStatus(t *testing.T, runc, root, id string) string {
	return runcState(t, runc, root, id)["status"].(string)
}

func runcPid(t *testing.T, runc, root, id string) int {
	return int(runcState(t, runc, root, id)["pid"].(float64))
}
