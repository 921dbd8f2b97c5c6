package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestUsageErrors runs bad command lines against an address where nothing
// listens: each must be refused with exit 2 and one line before any request
// (a request would fail with exit 5 instead).
func TestUsageErrors(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "script.sh")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "ebb"`},
		{[]string{"get"}, "missing NAME (usage: ebb get NAME"},
		{[]string{"get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"list", "--wat"}, "unknown flag: --wat (see 'ebb list --help')"},
		{[]string{"list", "-o", "xml"}, `--output "xml": must be table, json or yaml`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"images", "bogus"}, `unknown command "bogus" for "ebb images"`},
		{[]string{"images", "push"}, "missing FILE"},
		{[]string{"logs", "hello", "--tail", "-1"}, "--tail -1: must not be negative"},
		{[]string{"logs", "hello", "--tail", "x"}, `invalid argument "x" for "--tail"`},

		{[]string{"deploy"}, "missing NAME"},
		{[]string{"deploy", "Hello", "--image", "a"}, `function name: "Hello" must be a DNS label`},
		{[]string{"deploy", "hello", "--image", "a", "--binary", "b"}, "give only one of --image, --image-archive and --binary"},
		{[]string{"deploy", "hello", "--image", "a", "--port", "70000"}, "--port 70000: must be at most 65535"},
		{[]string{"deploy", "hello", "--image", "a", "--port", "0"}, "--port 0: must be at least 1"},
		{[]string{"deploy", "hello", "--image", "a", "--port", "http"}, `invalid argument "http" for "--port"`},
		{[]string{"deploy", "hello", "--image", "a", "--env", "FOO"}, `--env "FOO": want KEY=VALUE, or KEY- to remove KEY`},
		{[]string{"deploy", "hello", "--image", "a", "--env", "=x"}, `--env "=x": want KEY=VALUE`},
		{[]string{"deploy", "hello", "--image", "a", "--env", "1X=y"}, `invalid spec: env: "1X" is not a valid variable name`},
		{[]string{"deploy", "hello", "--image", "a", "--env", "PORT=1"}, "PORT is set by ebb from the port field"},
		{[]string{"deploy", "hello", "--image", "a", "--memory", "12XB"}, `--memory: "12XB" is not a quantity`},
		{[]string{"deploy", "hello", "--image", "a", "--memory", "1Ki"}, "below the 4Mi minimum"},
		{[]string{"deploy", "hello", "--image", "a", "--cpu", "0"}, "--cpu 0: must be positive"},
		{[]string{"deploy", "hello", "--image", "a", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"deploy", "hello", "--image", "a", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"deploy", "hello", "--image", "a", "--concurrency", "0"}, "--concurrency 0: must be at least 1"},
		{[]string{"deploy", "hello", "--image", "a", "--min", "-1"}, "--min -1: must be at least 0"},
		{[]string{"deploy", "hello", "--image", "a", "--min", "4", "--max", "3"}, "scale.min: 4 is above scale.max 3"},
		{[]string{"deploy", "hello", "--image", "a", "--hard-limit", "-2"}, "--hard-limit -2: must be at least 0"},
		{[]string{"deploy", "hello", "--image", "a", "--wait-timeout", "0s"}, "--wait-timeout 0s: must be positive"},
		{[]string{"deploy", "hello", "--image", "has space"}, `invalid spec: image: "has space" is not an image reference`},
		{[]string{"deploy", "hello", "--binary", notELF}, "not an ELF executable"},
		{[]string{"deploy", "hello", "--binary", "/nonexistent/bin"}, "no such file or directory"},
		{[]string{"deploy", "hello", "--image-archive", "/nonexistent/a.tar"}, "no such file or directory"},
		{[]string{"deploy", "hello", "--image-archive", t.TempDir()}, "is not a regular file"},

		{[]string{"traffic", "hello"}, "need a function name and at least one REVISION=PERCENT"},
		{[]string{"traffic", "hello", "100"}, `traffic "100": want REVISION=PERCENT`},
		{[]string{"traffic", "hello", "1=all"}, `percent "all" must be a whole number from 0 to 100`},
		{[]string{"traffic", "hello", "1=101"}, `percent "101" must be a whole number`},
		{[]string{"traffic", "hello", "1=50"}, "traffic: percents sum to 50, not 100"},
		{[]string{"traffic", "hello", "1=50", "hello-00001=50"}, "hello-00001 is named twice"},
		{[]string{"traffic", "hello", "latest=50", "@latest=50"}, "@latest is named twice"},
		{[]string{"traffic", "hello", "0=100"}, `generation "0" must be a number from 1`},
		{[]string{"traffic", "hello", "Rev_1=100"}, `revision: "Rev_1" must be a DNS label`},
		{[]string{"traffic", "hello", "1=100", "--tag", "1=Canary"}, `tag: "Canary" must be a DNS label`},
		{[]string{"traffic", "hello", "1=100", "--tag", "canary"}, `--tag "canary": want REVISION=TAG`},
		{[]string{"traffic", "hello", "1=100", "--tag", "1=a", "--tag", "2=a"}, `"a" is used twice`},

		{[]string{"rollout", "bogus", "hello"}, `unknown command "bogus" for "ebb rollout"`},
		{[]string{"rollout", "status"}, "missing NAME (usage: ebb rollout status NAME [ID]"},
		{[]string{"rollout", "status", "hello", "2", "3"}, `unexpected argument "3"`},
		{[]string{"rollout", "status", "hello", "Rev_1"}, `rollout "Rev_1": revision: "Rev_1" must be a DNS label`},
		{[]string{"rollout", "status", "hello", "--watch=maybe"}, `invalid argument "maybe" for "-w, --watch"`},
		{[]string{"rollout", "promote", "hello", "--reason", "a[2J"}, "--reason: reason: must be one line of printable text"},
		{[]string{"rollout", "resume", "hello", "--reason", "why"}, "unknown flag: --reason"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli{env: map[string]string{"EBB_API": "http://127.0.0.1:1", "HOME": t.TempDir()}}.run(t, tt.args...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			oneErrorLine(t, r, tt.want)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	c := cli{env: map[string]string{"HOME": t.TempDir()}}
	for _, args := range [][]string{{}, {"--help"}, {"images"}, {"deploy", "--help"}, {"help", "traffic"}, {"rollout"}, {"help", "rollout", "status"}} {
		r := c.run(t, args...)
		assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.NotEmpty(t, r.stdout)
	}
	r := c.run(t, "--help")
	assert.Contains(t, r.stdout, "Exit codes:")
	assert.Contains(t, r.stdout, "6  deploy was applied")
	assert.Contains(t, r.stdout, "7  rollout status --watch: the rollout was rolled back or aborted")
	r = c.run(t, "version")
	assert.Regexp(t, `^ebb \S+ \(go[^,]+, \w+/\w+\)\n$`, r.stdout)
}

// A new function needs an image; that is only known after asking the API.
func TestDeployNewFunctionNeedsImage(t *testing.T) {
	c, _ := newCLI(t)
	r := c.run(t, "deploy", "hello", "--env", "A=1")
	assert.Equal(t, exitUsage, r.code)
	oneErrorLine(t, r, "hello is a new function: give --image, --image-archive or --binary")
}

// Secrets are references to secret objects, which the API echoes, so a
// deploy that changes something else carries them over whole; --secret and
// --secret-file add, replace and remove references.
func TestDeploySecretFlags(t *testing.T) {
	c, f := newCLI(t)
	client, err := api.NewClient(f.url, f.token)
	require.NoError(t, err)
	_, _, err = client.PutFunction(context.Background(), "vault", api.FunctionSpec{
		Image: "a:b", Secrets: []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}},
	})
	require.NoError(t, err)

	r := c.run(t, "deploy", "vault", "--env", "A=1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}}, f.functionSpec("vault").Secrets, "carried over")

	r = c.run(t, "deploy", "vault", "--secret", "db:user=DB_USER", "--secret", "db2:password=DB_PASSWORD", "--secret-file", "tls:key.pem=server.key")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []api.Secret{
		{Secret: "db2", Key: "password", Env: "DB_PASSWORD"},
		{Secret: "db", Key: "user", Env: "DB_USER"},
		{Secret: "tls", Key: "key.pem", File: "server.key"},
	}, f.functionSpec("vault").Secrets)

	r = c.run(t, "deploy", "vault", "--secret", "DB_PASSWORD-", "--secret-file", "server.key-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []api.Secret{{Secret: "db", Key: "user", Env: "DB_USER"}}, f.functionSpec("vault").Secrets)

	for _, bad := range [][]string{
		{"--secret", "db=X"}, {"--secret", "db:k"}, {"--secret", ":k=X"}, {"--secret-file", "db:k="},
		{"--secret", "db:k=PORT"}, {"--secret-file", "db:k=../x"},
	} {
		r = c.run(t, append([]string{"deploy", "vault"}, bad...)...)
		assert.Equal(t, exitUsage, r.code, "%v", bad)
	}
}
