package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/ebbrun/ebb/api"
)

// Exit codes. They are part of the CLI's interface: scripts branch on them,
// so keep the numbers stable and the table in doc.go and in `ebb --help` true.
const (
	exitOK            = 0 // success
	exitFailure       = 1 // any other failure
	exitUsage         = 2 // bad command line or configuration
	exitNotFound      = 3 // the function (or other object) does not exist
	exitRejected      = 4 // the API rejected the input (4xx other than 404)
	exitUnavailable   = 5 // the API could not be reached or failed (5xx)
	exitDeployWait    = 6 // deploy was applied but the revision failed or did not get ready in time
	exitRolloutFailed = 7 // rollout status --watch saw the rollout end RolledBack or Aborted
)

const exitCodeHelp = `Exit codes:
  0  success
  1  any other failure
  2  usage error: bad flags, arguments or configuration
  3  not found: the function or revision does not exist
  4  the API rejected the input (a 4xx answer other than 404)
  5  the API could not be reached, or it failed (a 5xx answer)
  6  deploy was applied, but the revision failed or was not ready within --wait-timeout
  7  rollout status --watch: the rollout was rolled back or aborted`

// usageError is a mistake on the command line or in the configuration,
// found before anything was sent.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitError carries an explicit exit code, such as exitDeployWait.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode maps an error returned by the command tree to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) || api.IsValidation(err) {
		return exitUsage
	}
	var ae *api.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == 404:
			return exitNotFound
		case ae.Status >= 400 && ae.Status < 500:
			return exitRejected
		default:
			return exitUnavailable
		}
	}
	if errors.Is(err, context.Canceled) {
		return exitFailure
	}
	var ne net.Error
	var ue2 *url.Error
	if errors.As(err, &ue2) || errors.As(err, &ne) {
		return exitUnavailable
	}
	return exitFailure
}

// errorLine renders err as the one line ebb prints on failure.
func errorLine(err error) string {
	msg := err.Error()
	if errors.Is(err, context.Canceled) {
		msg = "interrupted"
	}
	return "ebb: " + strings.Join(strings.Fields(msg), " ")
}
