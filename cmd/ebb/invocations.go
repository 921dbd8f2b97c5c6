package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) invocationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "invocations",
		Aliases: []string{"invocation", "inv"},
		Short:   "Submit asynchronous invocations of a function and read their results",
		Long: `An asynchronous invocation is a request to a function that ebb stores, answers
at once with an id, and delivers later: retried on 5xx, timeouts and lost
connections (with exponential backoff) up to its max attempts, then
dead-lettered. Its result (status, headers, up to 1 MiB of body) is kept for
a day. A request to the function's URL with the header 'Ebb-Invoke: async'
is queued the same way.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.invocationsSubmitCmd(), a.invocationsListCmd(), a.invocationsGetCmd())
	return cmd
}

func (a *app) invocationsSubmitCmd() *cobra.Command {
	var (
		data, path, callback, key, contentType string
		attempts                               int
	)
	cmd := &cobra.Command{
		Use:   "submit FN [--data STRING|@FILE] [--path P] [--callback URL] [--idempotency-key K] [--max-attempts N]",
		Short: "Queue an asynchronous invocation of function FN",
		Long: `Queue a POST of --data (a string, @FILE, or @- for standard input) to path
--path of function FN, and print the invocation's id. --callback names a
URL that gets the result POSTed as JSON once it is final; a second submit
with the same --idempotency-key returns the first one's invocation.`,
		Args: exactArgs("FN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("function name", args[0]); err != nil {
				return &usageError{err: err}
			}
			body, err := a.readData(data)
			if err != nil {
				return err
			}
			s := api.SubmitInvocation{Body: body, ContentType: contentType, Path: path,
				Options: api.InvocationOptions{CallbackURL: callback, IdempotencyKey: key, MaxAttempts: attempts}}
			if cmd.Flags().Changed("max-attempts") && attempts == 0 {
				return usagef("--max-attempts 0: must be at least 1")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			inv, dup, err := c.SubmitInvocation(cmd.Context(), args[0], s)
			if err != nil {
				return fmt.Errorf("submit an invocation of %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(inv)
			}
			if dup {
				_, err = fmt.Fprintf(a.stdout, "%s (submitted before with this idempotency key; %s)\n", inv.ID, inv.Status)
				return err
			}
			_, err = fmt.Fprintln(a.stdout, inv.ID)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", "the request body: a string, @FILE, or @- for standard input")
	f.StringVar(&path, "path", "", "the path (and query) to deliver to (default /)")
	f.StringVar(&contentType, "content-type", "", "the body's Content-Type")
	f.StringVar(&callback, "callback", "", "an http(s) URL to POST the result to once final")
	f.StringVar(&key, "idempotency-key", "", "de-duplicates submissions of the function within the retention")
	f.IntVar(&attempts, "max-attempts", 0, fmt.Sprintf("deliveries before dead-lettering, 1-%d (default %d)", api.MaxInvocationAttempts, api.DefaultInvocationAttempts))
	return cmd
}

// readData is --data: the string itself, or @FILE's content (@- is
// standard input), at most api.MaxInvocationBody bytes.
func (a *app) readData(data string) ([]byte, error) {
	name, ok := strings.CutPrefix(data, "@")
	if !ok {
		return []byte(data), nil
	}
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("--data: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, api.MaxInvocationBody+1))
	if err != nil {
		return nil, usagef("--data: read %s: %v", name, err)
	}
	if len(b) > api.MaxInvocationBody {
		return nil, usagef("--data: %s is over the %d-byte limit", name, api.MaxInvocationBody)
	}
	return b, nil
}

func (a *app) invocationsListCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list FN [--limit N]",
		Short: "List a function's invocations, newest first",
		Args:  exactArgs("FN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("function name", args[0]); err != nil {
				return &usageError{err: err}
			}
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			invs, err := c.ListInvocations(cmd.Context(), args[0], limit)
			if err != nil {
				return fmt.Errorf("list the invocations of %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(api.InvocationList{Items: invs})
			}
			if len(invs) == 0 {
				_, err := fmt.Fprintf(a.stdout, "no invocations of %s\n", args[0])
				return err
			}
			t := newTable(a.stdout, "ID", "STATUS", "ATTEMPTS", "RESULT", "AGE")
			for _, inv := range invs {
				t.row(inv.ID, string(inv.Status), fmt.Sprintf("%d/%d", inv.Attempts, inv.MaxAttempts), resultStatus(inv), age(a.now(), inv.CreatedAt))
			}
			return t.flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (default: the server's, 50)")
	return cmd
}

func resultStatus(inv api.Invocation) string {
	if inv.Result == nil {
		return "-"
	}
	return strconv.Itoa(inv.Result.Status)
}

func (a *app) invocationsGetCmd() *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "get FN ID [--wait [--timeout D]]",
		Short: "Show an invocation: its status, attempts and result",
		Long: `Show invocation ID of function FN. With --wait, poll until it is final
(Succeeded, Failed or DeadLetter), at most --timeout.`,
		Args: exactArgs("FN", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("function name", args[0]); err != nil {
				return &usageError{err: err}
			}
			if !api.ValidInvocationID(args[1]) {
				return usagef("%q is not an invocation id (32 hex digits)", args[1])
			}
			if timeout <= 0 {
				return usagef("--timeout %s: must be positive", timeout)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if wait {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			for {
				inv, err := c.GetInvocation(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				if !wait || inv.Status.Final() {
					return a.printInvocation(inv)
				}
				if err := a.sleep(ctx, a.pollInterval); err != nil {
					return &exitError{code: exitFailure, err: fmt.Errorf("invocation %s is still %s after %s", inv.ID, inv.Status, timeout)}
				}
			}
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the invocation is final")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func (a *app) printInvocation(inv api.Invocation) error {
	if a.structured() {
		return a.writeOut(inv)
	}
	w := newTabwriter(a.stdout)
	fmt.Fprintf(w, "ID:\t%s\n", inv.ID)
	fmt.Fprintf(w, "Function:\t%s\n", inv.Function)
	if inv.Namespace != "" && inv.Namespace != api.DefaultNamespace {
		fmt.Fprintf(w, "Namespace:\t%s\n", inv.Namespace)
	}
	fmt.Fprintf(w, "Status:\t%s\n", inv.Status)
	fmt.Fprintf(w, "Attempts:\t%d/%d\n", inv.Attempts, inv.MaxAttempts)
	fmt.Fprintf(w, "Request:\t%s %s (%d bytes)\n", inv.Request.Method, inv.Request.Path, len(inv.Request.Body))
	fmt.Fprintf(w, "Created:\t%s (%s ago)\n", inv.CreatedAt.UTC().Format(time.RFC3339), age(a.now(), inv.CreatedAt))
	if !inv.NextAttemptAt.IsZero() && inv.Status == api.InvocationQueued {
		fmt.Fprintf(w, "Next attempt:\t%s\n", inv.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	if !inv.CompletedAt.IsZero() {
		fmt.Fprintf(w, "Completed:\t%s\n", inv.CompletedAt.UTC().Format(time.RFC3339))
	}
	if inv.LastError != "" {
		fmt.Fprintf(w, "Last error:\t%s\n", inv.LastError)
	}
	if inv.CallbackURL != "" {
		fmt.Fprintf(w, "Callback:\t%s (%s)\n", inv.CallbackURL, orDash(inv.CallbackStatus))
	}
	if r := inv.Result; r != nil {
		fmt.Fprintf(w, "Result:\t%d %s\n", r.Status, http.StatusText(r.Status))
		truncated := ""
		if r.Truncated {
			truncated = ", truncated"
		}
		fmt.Fprintf(w, "Body:\t(%d bytes%s)\n", len(r.Body), truncated)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if inv.Result != nil && len(inv.Result.Body) > 0 {
		_, err := a.stdout.Write(inv.Result.Body)
		if err == nil && inv.Result.Body[len(inv.Result.Body)-1] != '\n' {
			_, err = io.WriteString(a.stdout, "\n")
		}
		return err
	}
	return nil
}
