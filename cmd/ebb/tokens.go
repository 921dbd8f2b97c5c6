package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

const tokensLong = `Tokens let people and programs use the API with only the rights they need.
Roles:

  admin      everything, in every namespace (also: creating tokens)
  developer  in one namespace: deploy, traffic, secrets, logs, and read it
  viewer     in one namespace: read it (no logs)
  metrics    read /metrics and nothing else (for Prometheus)

developer and viewer tokens act in the namespace --namespace (-n) names;
admin and metrics tokens act in every namespace and take none. Only an
admin may create, list or revoke tokens. A token's secret is shown once,
when it is created: ebb keeps only its hash.`

func (a *app) tokensCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Create, list and revoke API tokens (admin)",
		Long:  tokensLong,
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	cmd.AddCommand(a.tokensCreateCmd(), a.tokensListCmd(), a.tokensRevokeCmd())
	return cmd
}

func (a *app) tokensCreateCmd() *cobra.Command {
	var role, description string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--namespace NS] [--expires 24h] [--description TEXT]",
		Short: "Create a token and print it, this once",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.TokenRequest{Role: role, Description: description}
			if expires < 0 {
				return usagef("--expires %s: must not be negative", expires)
			}
			if expires > 0 {
				req.ExpiresIn = expires.String()
			}
			switch role {
			case "developer", "viewer":
				ns, err := a.inNamespace()
				if err != nil {
					return err
				}
				req.Namespace = ns
			case "":
				return usagef("--role is required: admin, developer, viewer or metrics")
			case "admin", "metrics":
				if a.namespace != "" {
					return usagef("a %s token acts in every namespace; drop --namespace", role)
				}
			default:
				return usagef("--role %q: must be admin, developer, viewer or metrics", role)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("create token: %w", err)
			}
			if a.structured() {
				return a.writeOut(t)
			}
			if err := printTokens(a.stdout, []api.Token{t}, a.now()); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "\nToken (shown only this once; store it now):\n%s\n", t.Token)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "admin, developer, viewer or metrics (required)")
	f.StringVar(&description, "description", "", "what the token is for, shown by list")
	f.DurationVar(&expires, "expires", 0, "lifetime, e.g. 24h or 90m (default: never expires)")
	return cmd
}

func (a *app) tokensListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tokens (every token, or with --namespace that namespace's)",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			// Only an explicit --namespace filters: a configured default
			// namespace would hide the admin and metrics tokens.
			ts, err := c.ListTokens(cmd.Context(), a.namespace)
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			if a.structured() {
				if ts == nil {
					ts = []api.Token{}
				}
				return a.writeOut(api.TokenList{Tokens: ts})
			}
			return printTokens(a.stdout, ts, a.now())
		},
	}
}

func (a *app) tokensRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token by its id; it stops working at once",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("revoke token %s: %w", args[0], err)
			}
			fmt.Fprintf(a.stdout, "token %s revoked\n", args[0])
			return nil
		},
	}
}

func printTokens(w io.Writer, ts []api.Token, now time.Time) error {
	t := newTable(w, "ID", "ROLE", "NAMESPACE", "EXPIRES", "AGE", "DESCRIPTION")
	for _, tok := range ts {
		expires := "never"
		switch {
		case tok.ExpiresAt == nil:
		case tok.Expired:
			expires = "expired"
		default:
			expires = tok.ExpiresAt.UTC().Format(time.RFC3339)
		}
		t.row(tok.ID, tok.Role, tok.Namespace, expires, age(now, tok.CreatedAt), tok.Description)
	}
	return t.flush()
}
