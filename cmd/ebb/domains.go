package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) domainsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "domains",
		Aliases: []string{"domain"},
		Short:   "Map your own host names to functions",
		Long: `A domain mapping routes a host you own (api.example.com) to a function of the
namespace (-n), over HTTP and, when the router terminates TLS, HTTPS, with the
function's traffic split. Point the host's DNS at the router. A host has one
owner: a namespace cannot map a host another namespace maps.

With ACME configured on the router, a mapped host gets its certificate at its
first HTTPS request; otherwise the router's certificate directory must hold
one for it. Deleting the function leaves the mapping (the host answers 404
until the function is deployed again); deleting the namespace deletes it.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.domainsAddCmd(), a.domainsListCmd(), a.domainsDeleteCmd())
	return cmd
}

// hostArg validates a host argument as the API will, lowercased.
func hostArg(arg string) (string, error) {
	host := strings.ToLower(arg)
	if err := api.ValidateHost("host", host); err != nil {
		return "", &usageError{err: err}
	}
	return host, nil
}

func (a *app) domainsAddCmd() *cobra.Command {
	var spec api.DomainSpec
	cmd := &cobra.Command{
		Use:   "add HOST --function NAME [--redirect]",
		Short: "Route a host to a function (or change which function it routes to)",
		Example: `  ebb domains add api.example.com --function hello
  ebb domains add shop.example.com --function shop --redirect -n team-a`,
		Args: exactArgs("HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := hostArg(args[0])
			if err != nil {
				return err
			}
			if spec.Function == "" {
				return usagef("--function is required")
			}
			if err := api.ValidateName("--function", spec.Function); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d, created, err := c.PutDomain(cmd.Context(), host, spec)
			if err != nil {
				return fmt.Errorf("add domain %s: %w", host, err)
			}
			if a.structured() {
				return a.writeOut(d)
			}
			did := "updated"
			if created {
				did = "added"
			}
			_, err = fmt.Fprintf(a.stdout, "%s domain %s -> function %s in namespace %s\n", did, d.Host, d.Function, d.Namespace)
			return err
		},
	}
	cmd.Flags().StringVar(&spec.Function, "function", "", "function of the namespace the host routes to")
	cmd.Flags().BoolVar(&spec.Redirect, "redirect", false, "redirect plain-HTTP requests for the host to HTTPS")
	return cmd
}

func (a *app) domainsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the namespace's domain mappings",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListDomains(cmd.Context())
			if err != nil {
				return fmt.Errorf("list domains: %w", err)
			}
			if a.structured() {
				if list == nil {
					list = []api.Domain{}
				}
				return a.writeOut(api.DomainList{Domains: list})
			}
			return printDomains(a.stdout, list, a.now())
		},
	}
}

func printDomains(w io.Writer, list []api.Domain, now time.Time) error {
	t := newTable(w, "HOST", "FUNCTION", "REDIRECT", "AGE")
	for _, d := range list {
		redirect := "-"
		if d.Redirect {
			redirect = "https"
		}
		t.row(d.Host, d.Function, redirect, age(now, d.CreatedAt))
	}
	return t.flush()
}

func (a *app) domainsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete HOST",
		Short: "Delete a domain mapping; the host is free for any namespace again",
		Args:  exactArgs("HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := hostArg(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteDomain(cmd.Context(), host); err != nil {
				return fmt.Errorf("delete domain %s: %w", host, err)
			}
			if a.structured() {
				return a.writeOut(map[string]any{"host": host, "deleted": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted domain %s\n", host)
			return err
		},
	}
}
