package main

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/manifest"
)

// applyOptions are the flags of `ebb apply`.
type applyOptions struct {
	fileFlags
	prune    bool
	selector string
	dryRun   string
}

const applyLong = `Apply manifests: make the objects they describe exist as written.

-f reads a file, every .yaml, .yml and .json file of a directory (and of its
subdirectories with --recursive) or standard input (-); each may hold many
documents. Documents are ebb's own (apiVersion: ebb.dev/v1; kinds Function,
Secret, Namespace, CronTrigger, Job) or Knative serving.knative.dev/v1 Services.
Knative fields ebb cannot honour are errors; --lenient turns them into warnings.

The manifests are checked here first (an error names the file, document,
line and field), secret values are read from the files and environment
variables the Secrets name, then the server applies each document on its
own, all or nothing, and says whether it was created, configured or
unchanged. Applying the same manifests again writes nothing. A Job's spec
cannot change once it exists: another spec fails that document (delete the
job first).

--prune --selector app=x then deletes the functions with those labels, in
the namespaces applied to, that the manifests no longer name (cron triggers
and jobs have no labels: prune leaves them alone).
--dry-run=server validates everything on the server and writes nothing.

Exits non-zero when any document failed.`

func (a *app) applyCmd() *cobra.Command {
	var o applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [--recursive] [--lenient] [--prune --selector k=v] [--dry-run=server]",
		Short: "Create or update the objects of manifests (ebb's own or Knative Services)",
		Long:  applyLong,
		Example: `  ebb apply -f hello.yaml
  ebb apply -f deploy/ --recursive --prune --selector app=shop
  ebb export hello | ebb apply -f -`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.apply(cmd.Context(), o)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.prune, "prune", false, "delete the functions of --selector that the manifests no longer name")
	f.StringVarP(&o.selector, "selector", "l", "", "labels of the functions --prune considers, such as app=shop,tier=web")
	f.StringVar(&o.dryRun, "dry-run", "none", "server: validate on the server and write nothing; none: apply")
	return cmd
}

func (o applyOptions) validate() (dryRun bool, sel api.Selector, err error) {
	switch o.dryRun {
	case "none", "":
	case "server":
		dryRun = true
	default:
		return false, sel, usagef("--dry-run %q: must be server or none", o.dryRun)
	}
	switch {
	case o.prune && o.selector == "":
		return false, sel, usagef("--prune needs --selector, so that it deletes only the functions these manifests own")
	case !o.prune && o.selector != "":
		return false, sel, usagef("--selector chooses what --prune deletes; give --prune too")
	case o.prune:
		if sel, err = api.ParseSelector(o.selector); err != nil {
			return false, sel, usagef("--selector: %v", err)
		}
		if sel.Empty() {
			return false, sel, usagef("--selector %q selects everything; name at least one label", o.selector)
		}
	}
	return dryRun, sel, nil
}

func (a *app) apply(ctx context.Context, o applyOptions) error {
	dryRun, sel, err := o.validate()
	if err != nil {
		return err
	}
	ns, err := a.inNamespace()
	if err != nil {
		return err
	}
	objs, err := a.loadManifests(o.fileFlags, ns)
	if err != nil {
		return err
	}
	if err := a.resolveSecrets(objs); err != nil {
		return err
	}
	body, err := manifest.Render(objs, "yaml")
	if err != nil {
		return fmt.Errorf("render manifests: %w", err)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	resp, err := clientIn(c, ns).Apply(ctx, body, api.ApplyOptions{DryRun: dryRun})
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if len(resp.Results) != len(objs) {
		return fmt.Errorf("apply: the server answered %d results for %d documents", len(resp.Results), len(objs))
	}
	failed := 0
	for _, r := range resp.Results {
		if r.Error != nil {
			failed++
		}
	}
	if o.prune && failed == 0 {
		pruned, err := a.prune(ctx, c, objs, ns, sel, dryRun)
		if err != nil {
			return err
		}
		resp.Results = append(resp.Results, pruned...)
	}
	if a.structured() {
		if err := a.writeOut(resp); err != nil {
			return err
		}
	} else {
		a.printResults(objs, resp.Results, ns, dryRun)
	}
	if failed > 0 {
		return &exitError{code: exitRejected, err: fmt.Errorf("%d of %d objects failed", failed, len(objs))}
	}
	return nil
}

// printResults writes one line per object: function/hello created on
// stdout, or why it failed (with its file and document) on stderr.
func (a *app) printResults(objs []manifest.Object, results []api.ApplyResult, ns string, dryRun bool) {
	suffix := ""
	if dryRun {
		suffix = " (server dry run)"
	}
	for i, r := range results {
		name := objectName(r.Kind, r.Namespace, r.Name, ns)
		for _, w := range r.Warnings {
			fmt.Fprintf(a.stderr, "Warning: %s: %s\n", name, w)
		}
		if r.Error != nil {
			at := ""
			if i < len(objs) {
				at = " (" + where(objs[i]) + ")"
			}
			fmt.Fprintf(a.stderr, "%s failed%s: %s\n", name, at, r.Error.Message)
			continue
		}
		fmt.Fprintf(a.stdout, "%s %s%s\n", name, r.Action, suffix)
	}
}

// prune deletes the functions that match sel in the namespaces the
// manifests applied to (the command's namespace when they named none)
// and that the manifests do not name.
func (a *app) prune(ctx context.Context, c *api.Client, objs []manifest.Object, ns string, sel api.Selector, dryRun bool) ([]api.ApplyResult, error) {
	namespaces := map[string]bool{}
	keep := map[string]bool{}
	for _, o := range objs {
		if o.Function != nil {
			namespaces[o.Metadata.Namespace] = true
			keep[api.QualifiedName(o.Metadata.Namespace, o.Metadata.Name)] = true
		}
	}
	if len(namespaces) == 0 {
		namespaces[ns] = true
	}
	var out []api.ApplyResult
	for _, n := range sortedSet(namespaces) {
		cn := clientIn(c, n)
		fns, err := cn.ListFunctionsSelected(ctx, sel.String())
		if err != nil {
			return nil, fmt.Errorf("prune: list functions of %s in namespace %s: %w", sel, n, err)
		}
		sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
		for _, fn := range fns {
			// Checked here too: a server that ignored the selector must
			// not make prune delete everything.
			if keep[api.QualifiedName(n, fn.Name)] || !sel.Matches(fn.Labels) {
				continue
			}
			if !dryRun {
				if err := cn.DeleteFunction(ctx, fn.Name); err != nil && !api.IsNotFound(err) {
					return nil, fmt.Errorf("prune function %s: %w", fn.Name, err)
				}
			}
			out = append(out, api.ApplyResult{Kind: "Function", Namespace: n, Name: fn.Name, Action: api.ApplyDeleted, Warnings: []string{}})
		}
	}
	return out, nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// deleteFileCmd is `ebb delete -f`: delete the objects manifests name.
// Objects already gone are reported, not failures.
func (a *app) deleteFiles(ctx context.Context, o fileFlags) error {
	ns, err := a.inNamespace()
	if err != nil {
		return err
	}
	objs, err := a.loadManifests(o, ns)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	failed := 0
	for _, obj := range objs {
		name := objectName(obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name, ns)
		cn := clientIn(c, obj.Metadata.Namespace)
		switch {
		case obj.Function != nil:
			err = cn.DeleteFunction(ctx, obj.Metadata.Name)
		case obj.Secret != nil:
			err = cn.DeleteSecret(ctx, obj.Metadata.Name)
		case obj.CronTrigger != nil:
			err = cn.DeleteCronTrigger(ctx, obj.CronTrigger.Function, obj.Metadata.Name)
		case obj.Job != nil:
			err = cn.DeleteJob(ctx, obj.Metadata.Name)
		case obj.Namespace != nil:
			err = c.DeleteNamespace(ctx, obj.Metadata.Name, false)
		default:
			err = fmt.Errorf("kind %q cannot be deleted", obj.Kind)
		}
		switch {
		case api.IsNotFound(err):
			fmt.Fprintf(a.stdout, "%s not found\n", name)
		case err != nil:
			failed++
			fmt.Fprintf(a.stderr, "%s failed (%s): %s\n", name, where(obj), oneLineErr(err))
		default:
			fmt.Fprintf(a.stdout, "%s deleted\n", name)
		}
	}
	if failed > 0 {
		return &exitError{code: exitRejected, err: fmt.Errorf("%d of %d objects failed", failed, len(objs))}
	}
	return nil
}

func oneLineErr(err error) string {
	var ae *api.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}
