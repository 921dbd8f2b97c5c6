package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) namespacesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "namespaces",
		Aliases: []string{"namespace", "ns"},
		Short:   "Create, list and delete namespaces",
		Long: `Every function lives in a namespace. default exists from the start and
cannot be deleted; others are created and deleted here. Function commands
act in the namespace -n/--namespace names.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.namespacesCreateCmd(), a.namespacesListCmd(), a.namespacesDeleteCmd(), a.namespacesQuotaCmd())
	return cmd
}

func (a *app) namespacesCreateCmd() *cobra.Command {
	var quota *quotaFlags // quota.go
	cmd := &cobra.Command{
		Use:   "create NAME [--max-replicas N] [--max-functions N] [--max-memory Q] [--max-cpu C] [--max-secrets N]",
		Short: "Create a namespace (creating one that exists is not an error)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("namespace", args[0]); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q, err := quota.apply(api.Quota{})
			if err != nil {
				return err
			}
			ns, created, err := c.CreateNamespaceWithQuota(cmd.Context(), args[0], q)
			if err != nil {
				return fmt.Errorf("create namespace %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(ns)
			}
			if !created {
				_, err = fmt.Fprintf(a.stdout, "namespace %s exists already\n", ns.Name)
				if err == nil && quota.set() {
					_, err = fmt.Fprintf(a.stdout, "its quota is unchanged: change it with `ebb namespaces quota %s`\n", ns.Name)
				}
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "created namespace %s\n", ns.Name)
			return err
		},
	}
	quota = addQuotaFlags(cmd)
	return cmd
}

func (a *app) namespacesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List namespaces with their number of functions",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListNamespaces(cmd.Context())
			if err != nil {
				return fmt.Errorf("list namespaces: %w", err)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			if a.structured() {
				if list == nil {
					list = []api.Namespace{}
				}
				return a.writeOut(api.NamespaceList{Namespaces: list})
			}
			return printNamespaces(a.stdout, list, a.now())
		},
	}
}

func printNamespaces(w io.Writer, list []api.Namespace, now time.Time) error {
	t := newTable(w, "NAME", "FUNCTIONS", "STATE", "AGE")
	for _, ns := range list {
		state := "Active"
		if ns.Deleting {
			state = "Deleting"
		}
		t.row(ns.Name, fmt.Sprint(ns.Functions), state, age(now, ns.CreatedAt))
	}
	return t.flush()
}

func (a *app) namespacesDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a namespace with its functions and revisions",
		Long: `Delete a namespace with everything in it: its functions, their revisions
and replicas. It is refused while a function of the namespace has ready
replicas, which are serving; --force deletes it anyway and stops them.
The default namespace cannot be deleted.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("namespace", args[0]); err != nil {
				return &usageError{err: err}
			}
			if args[0] == api.DefaultNamespace {
				return usagef("the default namespace cannot be deleted")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteNamespace(cmd.Context(), args[0], force); err != nil {
				if api.IsConflict(err) && !force {
					return fmt.Errorf("delete namespace %s: %w (--force deletes it anyway)", args[0], err)
				}
				return fmt.Errorf("delete namespace %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(map[string]any{"name": args[0], "deleted": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted namespace %s\n", args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while its functions have ready replicas")
	return cmd
}
