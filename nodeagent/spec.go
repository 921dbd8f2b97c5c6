package nodeagent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// revSpec is what every replica of a revision shares, resolved once from
// the revision record and the image config.
type revSpec struct {
	function  string
	revision  string
	image     string
	args      []string
	env       []string // without the per-replica variables
	cpu       float64
	memory    int64
	pids      int64
	hardLimit int
	timeout   time.Duration
	// h2c: the program speaks HTTP/2 without TLS only, and is probed so.
	h2c bool
	// secretFiles maps file names under /run/secrets to their contents.
	secretFiles map[string]string
	// secretEnv are the secret variables (KEY=VALUE), which reach the
	// program through a tmpfs file and ebb-launch, never the OCI spec.
	secretEnv []string
}

// resolveRevSpec applies a revision's spec to its image config the way
// Docker and Kubernetes do: args replace the image's CMD and keep its
// ENTRYPOINT; env adds to and overrides the image's; PORT and the EBB_*
// variables are set last so nothing can override them. secrets holds the
// data of every secret object the spec refers to, by name.
func resolveRevSpec(rev store.Revision, img ImageConfig, secrets map[string]map[string][]byte) (*revSpec, error) {
	spec := rev.Spec.WithDefaults()
	args := append([]string(nil), img.Entrypoint...)
	if len(spec.Args) > 0 {
		args = append(args, spec.Args...)
	} else {
		args = append(args, img.Cmd...)
	}
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("%w: image %s has no entrypoint or cmd, and the function sets no args", ErrBadImage, spec.Image)
	}
	mem, err := api.ParseBytes(spec.Resources.Memory)
	if err != nil {
		return nil, fmt.Errorf("revision %s memory: %w", rev.Name, err)
	}

	env := newEnv(img.Env)
	if _, ok := env.vals["PATH"]; !ok {
		env.set("PATH", defaultPath) // as Docker and containerd do for an image without one
	}
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env.set(k, spec.Env[k])
	}
	files := map[string]string{}
	secretEnv := newEnv(nil)
	for _, s := range spec.Secrets {
		data, ok := secrets[s.Secret]
		if !ok {
			return nil, fmt.Errorf("secret %q does not exist", s.Secret)
		}
		value, ok := data[s.Key]
		if !ok {
			return nil, fmt.Errorf("secret %q has no key %q", s.Secret, s.Key)
		}
		if s.Env != "" {
			if reservedEnv(s.Env) {
				continue // ebb's own variables win, as they did when secrets were in the spec's env
			}
			secretEnv.set(s.Env, string(value))
		} else {
			files[s.File] = string(value)
		}
	}
	env.set("PORT", strconv.Itoa(spec.Port))
	// The function and its namespace as users name them; the revision by
	// its own name, which carries the qualified one ({fn}.{ns}-NNNNN).
	ns, fn := api.SplitQualifiedName(rev.Function)
	env.set("EBB_FUNCTION", fn)
	env.set("EBB_NAMESPACE", ns)
	env.set("EBB_REVISION", rev.Name)

	return &revSpec{
		h2c:         spec.SpeaksH2C(),
		function:    rev.Function,
		revision:    rev.Name,
		image:       spec.Image,
		args:        args,
		env:         env.list(),
		cpu:         spec.Resources.CPU,
		memory:      mem,
		pids:        int64(spec.Resources.Pids),
		hardLimit:   spec.Concurrency.HardLimit,
		timeout:     spec.Timeout.Duration,
		secretFiles: files,
		secretEnv:   secretEnv.list(),
	}, nil
}

// reservedEnv are the variables ebb sets last in every replica.
func reservedEnv(k string) bool { return k == "PORT" || strings.HasPrefix(k, "EBB_") }

// containerSpec is one replica's container: the revision's spec plus the
// replica's identity and port.
// secretsDir is the revision's directory of secretFiles.
func (s *revSpec) containerSpec(node, id string, port int, secretsDir string, tmpBytes int64) ContainerSpec {
	env := newEnv(s.env)
	env.set("PORT", strconv.Itoa(port))
	env.set("EBB_REPLICA", id)
	var filesDir, envFile string
	if len(s.secretFiles) > 0 {
		filesDir = filepath.Join(secretsDir, secretFilesDir)
	}
	if len(s.secretEnv) > 0 {
		envFile = filepath.Join(secretsDir, secretEnvFile)
	}
	return ContainerSpec{
		ID:    id,
		Image: s.image,
		Labels: map[string]string{
			LabelNode:     node,
			LabelFunction: s.function,
			LabelRevision: s.revision,
			LabelReplica:  id,
			LabelPort:     strconv.Itoa(port),
		},
		Args:          s.args,
		Env:           env.list(),
		CPU:           s.cpu,
		MemoryBytes:   s.memory,
		PidsLimit:     s.pids,
		TmpBytes:      tmpBytes,
		SecretsDir:    filesDir,
		SecretEnvFile: envFile,
	}
}

// envList is an ordered environment with set-or-replace.
type envList struct {
	keys []string
	vals map[string]string
}

func newEnv(kvs []string) *envList {
	e := &envList{vals: map[string]string{}}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	return e
}

func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) list() []string {
	if len(e.keys) == 0 {
		return nil
	}
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k + "=" + e.vals[k]
	}
	return out
}

// A revision's secrets directory holds its secret files, mounted at
// /run/secrets, and its secret variables, which ebb-launch reads.
const (
	secretFilesDir = "files"
	secretEnvFile  = "env"
)

// writeSecrets puts a revision's secret files and variables in dir, on the
// node's secrets tmpfs, where its containers mount them from. Everything is
// root's and 0400 (directories 0500) until the runtime gives it to the
// container's user. Revisions are immutable, so existing files are
// rewritten only to repair them.
func writeSecrets(dir string, files map[string]string, env []string) error {
	if len(files) == 0 && len(env) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create secrets dir: %w", err)
	}
	if len(files) > 0 {
		fdir := filepath.Join(dir, secretFilesDir)
		if err := os.Mkdir(fdir, 0o500); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create secrets dir: %w", err)
		}
		for name, value := range files {
			if err := writeSecret(filepath.Join(fdir, name), []byte(value)); err != nil {
				return fmt.Errorf("write secret file %s: %w", name, err)
			}
		}
	}
	if len(env) > 0 {
		var b strings.Builder
		for _, kv := range env {
			b.WriteString(kv)
			b.WriteByte(0)
		}
		if err := writeSecret(filepath.Join(dir, secretEnvFile), []byte(b.String())); err != nil {
			return fmt.Errorf("write secret variables: %w", err)
		}
	}
	return nil
}

// writeSecret writes one file 0400 through a rename, so that a container
// never sees it half written.
func writeSecret(p string, data []byte) error {
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	if err := os.WriteFile(tmp, data, 0o400); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// defaultPath is the PATH of a process whose image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newReplicaID names a replica after its revision, as Kubernetes names
// pods, within containerd's identifier limit.
func newReplicaID(rev string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // cannot happen on Linux
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	if len(rev)+1+len(b) > maxReplicaIDLen {
		rev = strings.TrimRight(rev[:maxReplicaIDLen-1-len(b)], "-")
	}
	return rev + "-" + string(b[:])
}

// errorMessage is a one-line reason for status, without the wrapping noise
// of gRPC errors.
func errorMessage(err error) string {
	msg := err.Error()
	if errors.Is(err, ErrBadImage) {
		msg = strings.TrimPrefix(msg, ErrBadImage.Error()+": ")
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	return msg
}
