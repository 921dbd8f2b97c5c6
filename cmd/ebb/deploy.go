package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// deployOptions are the flags of `ebb deploy`.
type deployOptions struct {
	image, archive, binary string
	imagePullSecret        string
	env                    []string
	secrets, secretFiles   []string
	port                   int
	min, max, initial      int
	concurrency, hardLimit int
	timeout                time.Duration
	memory                 string
	cpu                    float64
	noWait                 bool
	waitTimeout            time.Duration
	// tag and noTraffic: lifecycle.go.
	tag       string
	noTraffic bool
}

const deployLong = `Create or update a function and wait until its latest revision is ready.

The image comes from exactly one of:
  --image REF           an image already pushed (see 'ebb images')
  --image-archive FILE  an OCI layout or docker-save tar, pushed first
  --binary FILE         a static Linux executable, packaged into an image and pushed

When the function exists, only the flags given change its spec, as with
'gcloud run deploy': 'ebb deploy hello --env GREETING=hi' keeps the image
and every other setting. --env KEY- removes a variable. A spec that changes
creates a new revision, which takes the traffic that follows @latest.

Secrets come from secret objects of the function's namespace (see 'ebb
secrets'): --secret NAME:KEY=VAR sets $VAR to key KEY of secret NAME, and
--secret-file NAME:KEY=FILE puts it in /run/secrets/FILE; --secret VAR- and
--secret-file FILE- remove one. The values never pass through the CLI.

--tag NAME gives the new revision its own URL, {tag}-{function}.{domain}
(moving the tag if another revision had it). With --no-traffic as well, the
split is kept as it is: traffic that followed @latest is pinned to the
current latest revision first, so the new one is reachable only at its tag
URL, ready for 'ebb traffic' or a rollout to move traffic to it.

Unless --no-wait is given, deploy then waits up to --wait-timeout: until the
revision has started (ready >= desired, and at least one replica for a new
revision with an initial scale above zero), or, for a revision that is
meant to be at zero, until its status reports it idle. It fails at once,
with the revision's last log lines, if the revision is Failed or CrashLoop.`

func (a *app) deployCmd() *cobra.Command {
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy NAME (--image REF | --image-archive FILE | --binary FILE) [flags]",
		Short: "Create or update a function, then wait until it is ready",
		Long:  deployLong,
		Example: `  ebb deploy hello --binary ./hello
  ebb deploy hello --image-archive hello.tar --env GREETING=hi --max 10
  ebb deploy hello --env GREETING=hello   # new revision, same image
  ebb deploy api --secret db:password=DB_PASSWORD --secret-file tls:key.pem=key.pem`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deploy(cmd.Context(), args[0], o, cmd.Flags().Changed)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.image, "image", "", "image reference: one already pushed, or one naming its registry (registry.example.com/team/hello:v1)")
	f.StringVar(&o.imagePullSecret, "image-pull-secret", "", `secret with the image registry's credentials (keys username and password, or .dockerconfigjson); "" removes it`)
	f.StringVar(&o.archive, "image-archive", "", "image archive to push and deploy (OCI layout or docker-save tar)")
	f.StringVar(&o.binary, "binary", "", "static Linux executable to package as an image, push and deploy")
	f.StringArrayVar(&o.env, "env", nil, "KEY=VALUE to set an environment variable, KEY- to remove one (repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "NAME:KEY=VAR to set $VAR from key KEY of secret NAME, VAR- to remove it (repeatable)")
	f.StringArrayVar(&o.secretFiles, "secret-file", nil, "NAME:KEY=FILE to put key KEY of secret NAME in /run/secrets/FILE, FILE- to remove it (repeatable)")
	f.IntVar(&o.port, "port", 0, "port the function listens on, passed as $PORT (default 8080)")
	f.IntVar(&o.min, "min", 0, "minimum replicas (default 0: scale to zero)")
	f.IntVar(&o.initial, "initial", 0, "replicas a new revision starts with (default 1; 0 deploys it at zero)")
	f.IntVar(&o.max, "max", 0, "maximum replicas (default 0: unlimited)")
	f.IntVar(&o.concurrency, "concurrency", 0, "in-flight requests per replica the autoscaler aims for (default 100)")
	f.IntVar(&o.hardLimit, "hard-limit", 0, "most in-flight requests one replica gets (default 0: no limit)")
	f.DurationVar(&o.timeout, "timeout", 0, "request timeout, such as 30s (default 5m)")
	f.StringVar(&o.memory, "memory", "", "memory limit per replica, such as 128Mi or 1Gi (default 256Mi)")
	f.Float64Var(&o.cpu, "cpu", 0, "CPU limit per replica in cores, such as 0.5 (default 1)")
	f.BoolVar(&o.noWait, "no-wait", false, "return once the spec is stored, without waiting for readiness")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 2*time.Minute, "how long to wait for the revision to get ready")
	f.StringVar(&o.tag, "tag", "", "give the new revision its own URL, {tag}-{function}.{domain}")
	f.BoolVar(&o.noTraffic, "no-traffic", false, "with --tag: the new revision takes no traffic; the current split is kept")
	return cmd
}

// applySecretFlags returns refs with --secret (env) and --secret-file
// (file) flags applied: NAME:KEY=TARGET sets the reference of TARGET,
// TARGET- removes it.
func applySecretFlags(refs []api.Secret, envFlags, fileFlags []string) ([]api.Secret, error) {
	out := append([]api.Secret(nil), refs...)
	apply := func(flag, v string, file bool) error {
		what := "VAR"
		if file {
			what = "FILE"
		}
		target := func(r api.Secret) string {
			if file {
				return r.File
			}
			return r.Env
		}
		if t, ok := strings.CutSuffix(v, "-"); ok && !strings.ContainsAny(v, ":=") {
			out = slices.DeleteFunc(out, func(r api.Secret) bool { return target(r) == t })
			return nil
		}
		src, t, ok := strings.Cut(v, "=")
		name, key, ok2 := strings.Cut(src, ":")
		if !ok || !ok2 || name == "" || key == "" || t == "" {
			return usagef("--%s %q: want NAME:KEY=%s, or %s- to remove one", flag, v, what, what)
		}
		ref := api.Secret{Secret: name, Key: key}
		if file {
			ref.File = t
		} else {
			ref.Env = t
		}
		if i := slices.IndexFunc(out, func(r api.Secret) bool { return target(r) == t }); i >= 0 {
			out[i] = ref
		} else {
			out = append(out, ref)
		}
		return nil
	}
	for _, v := range envFlags {
		if err := apply("secret", v, false); err != nil {
			return nil, err
		}
	}
	for _, v := range fileFlags {
		if err := apply("secret-file", v, true); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		out = nil
	}
	return out, nil
}

// imageSources counts the image flags given.
func (o deployOptions) imageSources() int {
	n := 0
	for _, s := range []string{o.image, o.archive, o.binary} {
		if s != "" {
			n++
		}
	}
	return n
}

// applyDeployFlags returns base with the flags that were given applied.
// base is the function's current spec, or the zero spec for a new function,
// so that flags not given keep their value (or the API's default).
// changed reports whether a flag was set on the command line.
func applyDeployFlags(base api.FunctionSpec, o deployOptions, changed func(string) bool) (api.FunctionSpec, error) {
	spec := base
	if o.image != "" {
		spec.Image = o.image
	}
	if changed("image-pull-secret") {
		spec.ImagePullSecret = o.imagePullSecret
	}
	if len(o.env) > 0 {
		env := make(map[string]string, len(base.Env)+len(o.env))
		for k, v := range base.Env {
			env[k] = v
		}
		for _, e := range o.env {
			if k, ok := strings.CutSuffix(e, "-"); ok && !strings.Contains(e, "=") {
				delete(env, k)
				continue
			}
			k, v, ok := strings.Cut(e, "=")
			if !ok || k == "" {
				return api.FunctionSpec{}, usagef("--env %q: want KEY=VALUE, or KEY- to remove KEY", e)
			}
			env[k] = v
		}
		if len(env) == 0 {
			env = nil
		}
		spec.Env = env
	}
	if len(o.secrets) > 0 || len(o.secretFiles) > 0 {
		refs, err := applySecretFlags(base.Secrets, o.secrets, o.secretFiles)
		if err != nil {
			return api.FunctionSpec{}, err
		}
		spec.Secrets = refs
	}
	type intFlag struct {
		name string
		val  int
		min  int
		dst  *int
	}
	for _, f := range []intFlag{
		{"port", o.port, 1, &spec.Port},
		{"min", o.min, 0, &spec.Scale.Min},
		{"max", o.max, 0, &spec.Scale.Max},
		{"concurrency", o.concurrency, 1, &spec.Concurrency.Target},
		{"hard-limit", o.hardLimit, 0, &spec.Concurrency.HardLimit},
	} {
		if !changed(f.name) {
			continue
		}
		if f.val < f.min {
			return api.FunctionSpec{}, usagef("--%s %d: must be at least %d", f.name, f.val, f.min)
		}
		*f.dst = f.val
	}
	if changed("initial") {
		if o.initial < 0 {
			return api.FunctionSpec{}, usagef("--initial %d: must be at least 0", o.initial)
		}
		initial := o.initial
		spec.Scale.Initial = &initial
	}
	if changed("port") && o.port > 65535 {
		return api.FunctionSpec{}, usagef("--port %d: must be at most 65535", o.port)
	}
	if changed("timeout") {
		if o.timeout <= 0 {
			return api.FunctionSpec{}, usagef("--timeout %s: must be positive", o.timeout)
		}
		spec.Timeout = api.D(o.timeout)
	}
	if changed("memory") {
		if _, err := api.ParseBytes(o.memory); err != nil {
			return api.FunctionSpec{}, usagef("--memory: %v", err)
		}
		spec.Resources.Memory = o.memory
	}
	if changed("cpu") {
		if o.cpu <= 0 {
			return api.FunctionSpec{}, usagef("--cpu %g: must be positive", o.cpu)
		}
		spec.Resources.CPU = o.cpu
	}
	// Check the whole spec as the API will, so that a bad combination
	// (--min above --max, say) is a usage error found before any upload.
	check := spec
	if check.Image == "" {
		check.Image = "pending-upload" // comes from --image-archive or --binary
	}
	if err := check.WithDefaults().Validate(); err != nil {
		return api.FunctionSpec{}, usagef("invalid spec: %v", err)
	}
	return spec, nil
}

func (a *app) deploy(ctx context.Context, name string, o deployOptions, changed func(string) bool) error {
	ns, err := a.functionNamespace(name)
	if err != nil {
		return err
	}
	if err := api.ValidateQualified(ns, name); err != nil {
		return &usageError{err: err}
	}
	if o.imageSources() > 1 {
		return usagef("give only one of --image, --image-archive and --binary")
	}
	if o.waitTimeout <= 0 {
		return usagef("--wait-timeout %s: must be positive", o.waitTimeout)
	}
	if err := o.checkTagFlags(); err != nil {
		return err
	}
	// Flags that are wrong on their own are reported before any request;
	// combinations with the stored spec are checked again below.
	if _, err := applyDeployFlags(api.FunctionSpec{}, o, changed); err != nil {
		return err
	}
	for _, p := range []string{o.archive, o.binary} {
		if p == "" || p == "-" {
			continue
		}
		if fi, err := os.Stat(p); err != nil {
			return &usageError{err: err}
		} else if !fi.Mode().IsRegular() {
			return usagef("%s is not a regular file", p)
		}
	}
	var bin ociimage.BuildOptions
	if o.binary != "" {
		var err error
		if bin, err = binaryImage(name, o.binary); err != nil {
			return err
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}

	var base api.FunctionSpec
	prevRevision := ""
	existing, err := c.GetFunction(ctx, name)
	switch {
	case err == nil:
		// Secrets are references to secret objects, so the spec read back
		// carries them over whole.
		base, prevRevision = existing.Spec, existing.LatestRevision
	case api.IsNotFound(err):
		if o.imageSources() == 0 {
			return usagef("%s is a new function: give --image, --image-archive or --binary", name)
		}
		if o.noTraffic {
			return usagef("%s is a new function: its first revision takes all traffic, so --no-traffic does not apply", name)
		}
	default:
		return fmt.Errorf("read %s: %w", name, err)
	}
	spec, err := applyDeployFlags(base, o, changed)
	if err != nil {
		return err
	}

	switch {
	case o.archive != "":
		img, err := a.pushArchive(ctx, c, o.archive)
		if err != nil {
			return err
		}
		spec.Image = img.Name
	case o.binary != "":
		port := spec.Port
		if port == 0 {
			port = api.DefaultPort
		}
		bin.ExposedPorts = []int{port}
		img, err := a.pushBinary(ctx, c, o.binary, bin)
		if err != nil {
			return err
		}
		spec.Image = img.Name
	}

	fn, created, err := a.putDeploy(ctx, c, name, spec, existing, o)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	fresh := fn.LatestRevision != prevRevision
	switch {
	case created:
		fmt.Fprintf(a.stderr, "Created function %s with revision %s\n", name, fn.LatestRevision)
	case fresh:
		fmt.Fprintf(a.stderr, "Updated function %s: new revision %s\n", name, fn.LatestRevision)
	default:
		fmt.Fprintf(a.stderr, "Function %s is unchanged: revision %s\n", name, fn.LatestRevision)
	}
	if fresh && !created && fn.Spec.Rollout != nil {
		// With a policy the new revision earns its traffic: say where it
		// starts and how to follow it. No rollout means a split set by hand.
		if ro, err := c.Rollout(ctx, name, fn.LatestRevision); err == nil {
			fmt.Fprintf(a.stderr, "Rollout %s started: canary at %d%%, stable %s; follow it with: ebb rollout status %s --watch\n",
				ro.ID, ro.Percent, ro.Stable, name)
		}
	}

	if !o.noWait {
		goal := waitGoal{revision: fn.LatestRevision, fresh: fresh, initial: initialScale(fn.Spec)}
		fn, err = a.waitReady(ctx, c, name, goal, o.waitTimeout)
		if err != nil {
			return err
		}
	}
	if a.structured() {
		return a.writeOut(fn)
	}
	return printDeployResult(a.stdout, fn, fresh)
}

// initialScale is the revision's initial replica count, defaulted as the
// control plane defaults it.
func initialScale(spec api.FunctionSpec) int {
	return *spec.WithDefaults().Scale.Initial
}

func printDeployResult(w io.Writer, fn api.Function, fresh bool) error {
	kv := newKV(w)
	kv.add("Function", fn.Name)
	rev := fn.LatestRevision
	if fresh {
		rev += " (new)"
	}
	kv.add("Revision", rev)
	kv.add("Image", fn.Spec.Image)
	kv.add("URL", fn.URL)
	if rs := findRevision(fn, fn.LatestRevision); rs != nil {
		kv.add("Status", fmt.Sprintf("%s, %d/%d ready", orDash(rs.State), rs.Ready, rs.Desired))
	}
	return kv.flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func findRevision(fn api.Function, name string) *api.RevisionStatus {
	for i := range fn.Revisions {
		if fn.Revisions[i].Name == name {
			return &fn.Revisions[i]
		}
	}
	return nil
}

// waitGoal is what deploy waits for.
type waitGoal struct {
	revision string
	// fresh is true when this deploy created the revision, so it must be
	// seen starting; an unchanged revision may already be idle at zero.
	fresh bool
	// initial is the revision's initial scale; 0 means it never starts
	// until a request comes.
	initial int
}

// waitState is what judge remembers between polls.
type waitState struct {
	// sawDesired is set once the revision was asked for replicas.
	sawDesired bool
}

// revisionFailed is a revision that cannot get ready: Failed or CrashLoop.
type revisionFailed struct {
	status api.RevisionStatus
}

func (e *revisionFailed) Error() string {
	s := e.status
	msg := fmt.Sprintf("revision %s is %s", s.Name, s.State)
	if s.Message != "" {
		msg += ": " + s.Message
	}
	if s.LastExitCode != nil {
		msg += fmt.Sprintf(" (last exit code %d, %d restarts)", *s.LastExitCode, s.Restarts)
	}
	return msg
}

// judge decides from one status read whether the wait is over. It is the
// pure core of waitReady: done with nil error means ready, a non-nil error
// means the revision failed, and progress says where things stand.
//
// "Ready" for a scale-to-zero function: a revision with desired > 0 is ready
// when ready >= desired. A new revision with an initial scale above zero
// must show at least one ready replica, which proves the image runs, even if
// the autoscaler has not written its desired count yet; if it was seen being
// asked for replicas and is now Idle, it came up and scaled away between two
// polls. A revision that is meant to be at zero (initial scale 0, or an
// unchanged revision that has gone idle) is ready once its status reports it
// without a failure.
func judge(goal waitGoal, fn api.Function, st *waitState) (done bool, progress string, err error) {
	rs := findRevision(fn, goal.revision)
	if rs == nil {
		return false, fmt.Sprintf("waiting for revision %s to report status", goal.revision), nil
	}
	if rs.State == api.RevisionFailed || rs.State == api.RevisionCrashLoop {
		return false, "", &revisionFailed{status: *rs}
	}
	progress = fmt.Sprintf("%s: %s, %d/%d ready", rs.Name, orDash(rs.State), rs.Ready, rs.Desired)
	if rs.Message != "" {
		progress += " (" + rs.Message + ")"
	}
	if rs.Desired > 0 {
		st.sawDesired = true
		return rs.Ready >= rs.Desired, progress, nil
	}
	mustStart := goal.fresh && goal.initial > 0 && !st.sawDesired
	if mustStart {
		return rs.Ready >= 1, progress, nil
	}
	return true, progress, nil
}

// waitReady polls the function until judge says the latest revision is
// ready or failed, or until timeout.
func (a *app) waitReady(ctx context.Context, c *api.Client, name string, goal waitGoal, timeout time.Duration) (api.Function, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(a.pollInterval)
	defer ticker.Stop()
	var st waitState
	last := ""
	for {
		fn, err := c.GetFunction(wctx, name)
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return api.Function{}, a.waitTimedOut(goal, timeout, last)
			}
			return api.Function{}, fmt.Errorf("wait for %s: %w", goal.revision, err)
		}
		done, progress, err := judge(goal, fn, &st)
		var failed *revisionFailed
		if errors.As(err, &failed) {
			for _, l := range failed.status.LastLogLines {
				fmt.Fprintf(a.stderr, "  | %s\n", l)
			}
			return api.Function{}, &exitError{code: exitDeployWait, err: err}
		}
		if progress != last {
			fmt.Fprintln(a.stderr, progress)
			last = progress
		}
		if done {
			return fn, nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return api.Function{}, fmt.Errorf("wait for %s: %w", goal.revision, ctx.Err())
			}
			return api.Function{}, a.waitTimedOut(goal, timeout, last)
		case <-ticker.C:
		}
	}
}

func (a *app) waitTimedOut(goal waitGoal, timeout time.Duration, last string) error {
	msg := fmt.Sprintf("revision %s was not ready within %s", goal.revision, timeout)
	if last != "" {
		msg += "; last status: " + last
	}
	return &exitError{code: exitDeployWait, err: errors.New(msg)}
}
