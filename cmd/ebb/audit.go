package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) auditCmd() *cobra.Command {
	var since string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--since 1h|TIME] [-n NAMESPACE] [--limit N]",
		Short: "Print the audit log: who changed what, when, and how it ended (admin only)",
		Long: `Print the audit log, oldest first: one line per mutating API call and per
secret read by a node agent, with the token id that made it.

Every namespace is shown unless -n/--namespace is given on the command line
(EBB_NAMESPACE and the config file's namespace: do not narrow it).
--since takes a duration back from now (90m, 24h) or an RFC 3339 time.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := api.AuditQuery{Limit: limit}
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			if since != "" {
				t, err := parseSince(since, a.now())
				if err != nil {
					return err
				}
				q.Since = t
			}
			// An admin reads across namespaces: only -n on the command
			// line narrows, not EBB_NAMESPACE or the config file.
			q.Namespace = a.namespace
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("read the audit log: %w", err)
			}
			if a.structured() {
				if list.Events == nil {
					list.Events = []api.AuditEvent{}
				}
				return a.writeOut(list)
			}
			if err := printAudit(a.stdout, list.Events); err != nil {
				return err
			}
			if list.Skipped > 0 {
				fmt.Fprintf(a.stderr, "ebb: %d damaged lines of the audit log were skipped\n", list.Skipped)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only events since this long ago (1h) or this RFC 3339 time")
	f.IntVar(&limit, "limit", 0, "print at most the newest N events (0: the server's default, 100)")
	return cmd
}

// parseSince reads --since: a duration back from now or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usagef("--since %q: must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--since %q: want a duration such as 1h or an RFC 3339 time such as 2026-12-06T13:00:00Z", s)
}

func printAudit(w io.Writer, events []api.AuditEvent) error {
	t := newTable(w, "TIME", "TOKEN", "NAMESPACE", "VERB", "OBJECT", "RESULT", "REQUEST")
	for _, e := range events {
		result := strconv.Itoa(e.Status)
		if e.Code != "" {
			result += "/" + e.Code
		}
		t.row(e.Time.UTC().Format(time.RFC3339), cell(e.TokenID), cell(e.Namespace), cell(e.Verb), cell(e.Object), cell(result), cell(e.RequestID))
	}
	return t.flush()
}

// cell quotes a value that holds spaces or characters a terminal would act
// on (a newline would forge a row), so that each event stays one row.
func cell(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
