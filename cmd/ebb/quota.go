package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

// quotaFlags are the --max-* flags that set a namespace's quota, on
// `namespaces create` and `namespaces quota`.
type quotaFlags struct {
	cmd       *cobra.Command
	functions int
	replicas  int
	memory    string
	cpu       float64
	secrets   int
}

func addQuotaFlags(cmd *cobra.Command) *quotaFlags {
	q := &quotaFlags{cmd: cmd}
	f := cmd.Flags()
	f.IntVar(&q.functions, "max-functions", 0, "cap on the namespace's functions (0: no cap)")
	f.IntVar(&q.replicas, "max-replicas", 0, "cap on the running replicas of all its functions together (0: no cap)")
	f.StringVar(&q.memory, "max-memory", "", `cap on their memory together, e.g. 1Gi ("" or 0: no cap)`)
	f.Float64Var(&q.cpu, "max-cpu", 0, "cap on their CPU together, in cores (0: no cap)")
	f.IntVar(&q.secrets, "max-secrets", 0, "cap on the namespace's secrets (0: no cap)")
	return q
}

// set says whether any --max-* flag was given.
func (q *quotaFlags) set() bool {
	for _, name := range []string{"max-functions", "max-replicas", "max-memory", "max-cpu", "max-secrets"} {
		if q.cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// apply returns base with the caps the flags give replaced, checked.
func (q *quotaFlags) apply(base api.Quota) (api.Quota, error) {
	f := q.cmd.Flags()
	if f.Changed("max-functions") {
		base.Functions = q.functions
	}
	if f.Changed("max-replicas") {
		base.Replicas = q.replicas
	}
	if f.Changed("max-memory") {
		base.Memory = q.memory
		if q.memory == "0" {
			base.Memory = ""
		}
	}
	if f.Changed("max-cpu") {
		base.CPU = q.cpu
	}
	if f.Changed("max-secrets") {
		base.Secrets = q.secrets
	}
	if err := base.Validate(); err != nil {
		return base, &usageError{err: err}
	}
	return base, nil
}

func (a *app) namespacesQuotaCmd() *cobra.Command {
	var flags *quotaFlags
	cmd := &cobra.Command{
		Use:   "quota NAME [--max-replicas N] [--max-functions N] [--max-memory Q] [--max-cpu C] [--max-secrets N]",
		Short: "Show or change a namespace's quota",
		Long: `Without flags, show what namespace NAME may hold. With --max-* flags, change
those caps and keep the others; 0 removes a cap.

Replicas, memory and CPU cap the namespace's running replicas together:
the autoscaler runs no more than they allow (a revision's status says when
it was clipped), and a deploy whose min or initial scale cannot fit beside
the namespace's other functions' min scales is refused. Functions and
secrets cap how many the namespace may hold.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("namespace", args[0]); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q, err := c.GetQuota(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("get the quota of namespace %s: %w", args[0], err)
			}
			if flags.set() {
				if q, err = flags.apply(q); err != nil {
					return err
				}
				if q, err = c.SetQuota(cmd.Context(), args[0], q); err != nil {
					return fmt.Errorf("set the quota of namespace %s: %w", args[0], err)
				}
			}
			if a.structured() {
				return a.writeOut(q)
			}
			return printQuota(a.stdout, args[0], q)
		},
	}
	flags = addQuotaFlags(cmd)
	return cmd
}

func printQuota(w io.Writer, ns string, q api.Quota) error {
	count := func(n int) string {
		if n == 0 {
			return "-"
		}
		return strconv.Itoa(n)
	}
	memory, cpu := q.Memory, "-"
	if memory == "" {
		memory = "-"
	}
	if q.CPU != 0 {
		cpu = strconv.FormatFloat(q.CPU, 'f', -1, 64)
	}
	t := newTable(w, "NAMESPACE", "FUNCTIONS", "REPLICAS", "MEMORY", "CPU", "SECRETS")
	t.row(ns, count(q.Functions), count(q.Replicas), memory, cpu, count(q.Secrets))
	return t.flush()
}
