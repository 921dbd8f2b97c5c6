package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) secretsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "secrets",
		Aliases: []string{"secret"},
		Short:   "Create, change, list and delete secrets, and rotate their key",
		Long: `A secret is a named set of KEY=VALUE pairs in a namespace (-n), encrypted at
rest. Functions refer to its keys with 'ebb deploy --secret NAME:KEY=VAR' or
'--secret-file NAME:KEY=FILE'; the API never returns values. Changing a
secret rolls the functions that use it to a new revision.

Values come from --from-literal KEY=VALUE, --from-file KEY=PATH (or PATH,
keyed by its file name; - is standard input) and --from-env KEY=VAR (the
value of $VAR here), each repeatable; at most 1 MiB per secret.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.secretsWriteCmd("create", "Create a secret (an existing one is an error)", api.SecretCreate),
		a.secretsWriteCmd("set", "Set keys of a secret, keeping its other keys (creating it if need be)", api.SecretMerge),
		a.secretsListCmd(), a.secretsDeleteCmd(), a.secretsRotateCmd())
	return cmd
}

// secretSources are the value flags of secrets create and set.
type secretSources struct {
	literals, files, envs []string
}

func (o *secretSources) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&o.literals, "from-literal", nil, "KEY=VALUE (repeatable)")
	f.StringArrayVar(&o.files, "from-file", nil, "KEY=PATH, or PATH keyed by its file name; - reads standard input (repeatable)")
	f.StringArrayVar(&o.envs, "from-env", nil, "KEY=VAR: the value of environment variable VAR (repeatable)")
}

// read gathers the values. Every error is a usage error and names a flag,
// never a value.
func (o secretSources) read(stdin io.Reader, getenv func(string) string) (map[string][]byte, error) {
	data := map[string][]byte{}
	set := func(flag, k string, v []byte) error {
		if err := api.ValidateSecretKey("key", k); err != nil {
			return usagef("--%s: %v", flag, err)
		}
		if _, dup := data[k]; dup {
			return usagef("--%s: key %s is given twice", flag, k)
		}
		data[k] = v
		return nil
	}
	for _, l := range o.literals {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, usagef("--from-literal: want KEY=VALUE")
		}
		if err := set("from-literal", k, []byte(v)); err != nil {
			return nil, err
		}
	}
	for _, f := range o.files {
		k, path, ok := strings.Cut(f, "=")
		if !ok {
			k, path = filepath.Base(f), f
		}
		var r io.Reader = stdin
		if path != "-" {
			file, err := os.Open(path)
			if err != nil {
				return nil, &usageError{err: fmt.Errorf("--from-file: %w", err)}
			}
			defer file.Close()
			r = file
		} else if !ok {
			return nil, usagef("--from-file -: name the key, KEY=-")
		}
		v, err := io.ReadAll(io.LimitReader(r, api.MaxSecretBytes+1))
		if err != nil {
			return nil, &usageError{err: fmt.Errorf("--from-file %s: %w", path, err)}
		}
		if len(v) > api.MaxSecretBytes {
			return nil, usagef("--from-file %s: over the %d-byte limit of a secret", path, api.MaxSecretBytes)
		}
		if err := set("from-file", k, v); err != nil {
			return nil, err
		}
	}
	for _, e := range o.envs {
		k, name, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			return nil, usagef("--from-env %q: want KEY=VAR", e)
		}
		v := getenv(name)
		if v == "" {
			return nil, usagef("--from-env %s: $%s is not set", e, name)
		}
		if err := set("from-env", k, []byte(v)); err != nil {
			return nil, err
		}
	}
	if len(data) == 0 {
		return nil, usagef("give at least one value: --from-literal, --from-file or --from-env")
	}
	if n := api.SecretDataBytes(data); n > api.MaxSecretBytes {
		return nil, usagef("the values add up to %d bytes, over the %d-byte limit of a secret", n, api.MaxSecretBytes)
	}
	return data, nil
}

func (a *app) secretsWriteCmd(verb, short string, how api.SecretWrite) *cobra.Command {
	var o secretSources
	cmd := &cobra.Command{
		Use:   verb + " NAME (--from-literal KEY=VALUE | --from-file [KEY=]PATH | --from-env KEY=VAR)...",
		Short: short,
		Example: `  ebb secrets create db --from-literal user=app --from-env password=DB_PASSWORD
  ebb secrets set tls --from-file key.pem=./server.key -n team-a`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := api.ValidateName("secret name", name); err != nil {
				return &usageError{err: err}
			}
			data, err := o.read(a.stdin, a.getenv)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			info, created, err := c.PutSecret(cmd.Context(), name, data, how)
			if err != nil {
				return fmt.Errorf("%s secret %s: %w", verb, name, err)
			}
			if a.structured() {
				return a.writeOut(info)
			}
			did := "updated"
			if created {
				did = "created"
			}
			_, err = fmt.Fprintf(a.stdout, "%s secret %s in namespace %s (keys: %s)\n", did, info.Name, info.Namespace, strings.Join(info.Keys, " "))
			if err == nil && !created && len(info.UsedBy) > 0 {
				_, err = fmt.Fprintf(a.stdout, "rolling to a new revision: %s\n", strings.Join(info.UsedBy, " "))
			}
			return err
		},
	}
	o.flags(cmd)
	return cmd
}

func (a *app) secretsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the secrets of the namespace: keys and users, never values",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return fmt.Errorf("list secrets: %w", err)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			if a.structured() {
				if list == nil {
					list = []api.SecretInfo{}
				}
				return a.writeOut(api.SecretList{Secrets: list})
			}
			return printSecrets(a.stdout, list, a.now())
		},
	}
}

func printSecrets(w io.Writer, list []api.SecretInfo, now time.Time) error {
	t := newTable(w, "NAME", "KEYS", "USED BY", "AGE")
	for _, s := range list {
		users := strings.Join(s.UsedBy, ",")
		if users == "" {
			users = "-"
		}
		t.row(s.Name, strings.Join(s.Keys, ","), users, age(now, s.CreatedAt))
	}
	return t.flush()
}

func (a *app) secretsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a secret that no function uses",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("secret name", args[0]); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete secret %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(map[string]any{"name": args[0], "deleted": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted secret %s\n", args[0])
			return err
		},
	}
}

func (a *app) secretsRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key",
		Short: "Re-wrap every secret's data key under a new key-encryption key",
		Long: `Make a new key-encryption key (in the control plane's key file) and re-wrap
every secret's data key under it, in every namespace; values are not
re-encrypted. Functions keep running and reading secrets throughout; the
old key is dropped once nothing needs it.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.RotateSecretsKey(cmd.Context())
			if err != nil {
				return fmt.Errorf("rotate the secrets key: %w", err)
			}
			if a.structured() {
				return a.writeOut(res)
			}
			_, err = fmt.Fprintf(a.stdout, "rotated to key %s; re-wrapped %d secrets\n", res.KeyID, res.Rewrapped)
			return err
		},
	}
}
