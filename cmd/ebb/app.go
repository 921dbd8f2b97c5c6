package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

// app is one invocation of the CLI: its streams, environment and global
// flags. Tests build one with buffers and a fake environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// pollInterval is how often deploy re-reads status while it waits,
	// and rollout status --watch the rollout.
	pollInterval time.Duration
	// sleep waits between a watch's reads; tests replace it to drive the
	// polling without waiting.
	sleep func(ctx context.Context, d time.Duration) error

	// Global flags.
	configPath, apiURL, token, output, namespace string

	// started is set once a command's own code runs: every error before
	// that is cobra rejecting the command line.
	started bool
	// base is the API address in use, for error messages.
	base string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv,
		now:          time.Now,
		pollInterval: 500 * time.Millisecond,
		sleep:        sleepCtx,
	}
}

// execute runs the command line args and returns an error whose exitCode
// and errorLine are what the process should show.
func (a *app) execute(ctx context.Context, args []string) error {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	_, err := root.ExecuteContextC(ctx)
	if err == nil {
		return nil
	}
	if !a.started {
		var ue *usageError
		if !errors.As(err, &ue) {
			err = &usageError{err: err}
		}
		return err
	}
	return a.explain(err)
}

// explain rewrites transport failures and authentication refusals into
// messages that say what to check.
func (a *app) explain(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
		if errors.Is(err, context.DeadlineExceeded) {
			return &exitError{code: exitUnavailable, err: fmt.Errorf("the API at %s did not answer in time: %w", a.base, ue.Err)}
		}
		return &exitError{code: exitUnavailable, err: fmt.Errorf("cannot reach the API at %s (is ebbd running?): %w", a.base, ue.Err)}
	}
	if api.IsUnauthorized(err) {
		s, _ := resolveSettings(a.overrides(), a.getenv)
		if s.Token == "" {
			return fmt.Errorf("%w (no token configured: set --token, EBB_TOKEN or token: in %s)", err, a.configHint())
		}
		return fmt.Errorf("%w (token from %s)", err, s.TokenSource)
	}
	return err
}

func (a *app) configHint() string {
	if p := defaultConfigPath(a.getenv); p != "" {
		return p
	}
	return "the config file"
}

func (a *app) overrides() overrides {
	return overrides{configFlag: a.configPath, apiFlag: a.apiURL, tokenFlag: a.token, namespaceFlag: a.namespace}
}

// inNamespace is the namespace function commands act in: --namespace,
// else EBB_NAMESPACE, else the config file's namespace:, else default.
func (a *app) inNamespace() (string, error) {
	s, err := resolveSettings(a.overrides(), a.getenv)
	if err != nil {
		return "", err
	}
	if s.Namespace == "" {
		return api.DefaultNamespace, nil
	}
	return s.Namespace, nil
}

// functionNamespace checks a function name given on the command line (a
// usage error if it is not a DNS label) and returns the namespace it is
// meant in.
func (a *app) functionNamespace(name string) (string, error) {
	if err := api.ValidateName("function name", name); err != nil {
		return "", &usageError{err: err}
	}
	return a.inNamespace()
}

// client builds the API client from the resolved settings.
func (a *app) client() (*api.Client, error) {
	s, err := resolveSettings(a.overrides(), a.getenv)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(s.API, s.Token, api.WithUserAgent("ebb-cli/"+version()), api.WithNamespace(s.Namespace))
	if err != nil {
		return nil, &usageError{err: err}
	}
	a.base = c.BaseURL()
	return c, nil
}

const rootLong = `ebb deploys and manages HTTP functions on an ebb control plane.

Configuration: the API address and token come from the config file
$XDG_CONFIG_HOME/ebb/config.yaml (else ~/.config/ebb/config.yaml), which
` + "`make run`" + ` writes:

  api: http://127.0.0.1:8090
  token: <the contents of <data-dir>/token>
  namespace: default

--config PATH (or EBB_CONFIG) reads another file. EBB_API, EBB_TOKEN and
EBB_NAMESPACE override the file, and the --api, --token and --namespace
flags override both. Without any of them the API is ` + defaultAPI + `.

Every function lives in a namespace; function commands (deploy, list, get,
delete, revisions, traffic, rollback, rollout, logs, cron, invocations) act
in the one --namespace (-n) names, default unless configured. A function
in namespace ns is served at {fn}.{ns}.{domain}, one in default at
{fn}.{domain}.

Manifests: 'ebb apply -f' creates or updates what files describe (ebb's own
ebb.dev/v1 Function, Secret and Namespace, or Knative Services); 'ebb diff
-f' shows what it would change (exit 1 when something would), 'ebb export'
writes a function's manifest back out.

` + exitCodeHelp

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ebb",
		Short:         "Deploy and manage functions on ebb",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Runs after cobra has accepted the command line, before any
		// command's own code.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			a.started = true
			if cmd.Annotations[fileOutput] == "" && a.output != "table" && a.output != "json" && a.output != "yaml" {
				return usagef("--output %q: must be table, json or yaml", a.output)
			}
			return nil
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default $XDG_CONFIG_HOME/ebb/config.yaml or ~/.config/ebb/config.yaml)")
	pf.StringVar(&a.apiURL, "api", "", "API address, overriding EBB_API and the config file")
	pf.StringVar(&a.token, "token", "", "API token, overriding EBB_TOKEN and the config file")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVarP(&a.namespace, "namespace", "n", "", "namespace of the functions acted on, overriding EBB_NAMESPACE and the config file (default \"default\")")

	root.AddCommand(
		a.deployCmd(),
		a.listCmd(),
		a.getCmd(),
		a.deleteCmd(),
		a.revisionsCmd(),
		a.trafficCmd(),
		a.rollbackCmd(),
		a.rolloutCmd(),
		a.imagesCmd(),
		a.logsCmd(),
		a.statusCmd(),
		a.namespacesCmd(),
		a.secretsCmd(),
		a.domainsCmd(),
		a.cronCmd(),
		a.jobsCmd(),
		a.tokensCmd(),
		a.versionCmd(),
		a.auditCmd(),
		a.applyCmd(),
		a.diffCmd(),
		a.exportCmd(),
		a.waitCmd(),
		a.invocationsCmd(),
		a.backupCmd(),
		a.restoreCmd(),
	)
	return root
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("missing %s (usage: %s)", strings.Join(names[len(args):], " "), cmd.UseLine())
		case len(args) > len(names):
			return usagef("unexpected argument %q (usage: %s)", args[len(names)], cmd.UseLine())
		}
		return nil
	}
}

// structured reports whether -o json or -o yaml was asked for: the API's
// own objects rather than a table.
func (a *app) structured() bool { return a.output == "json" || a.output == "yaml" }

// writeOut prints v as -o asks: indented JSON, or the same document as
// YAML.
func (a *app) writeOut(v any) error {
	if a.output == "yaml" {
		return writeYAML(a.stdout, v)
	}
	return writeJSON(a.stdout, v)
}
