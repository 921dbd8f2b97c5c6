package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RolloutActions are the actions POST .../rollouts/{id}/{action} takes.
var RolloutActions = []string{RolloutPromote, RolloutPause, RolloutResume, RolloutAbort}

// ValidateRolloutAction checks an action name: it becomes a path segment,
// so anything but the four actions is refused before a request is made.
func ValidateRolloutAction(action string) error {
	if !slices.Contains(RolloutActions, action) {
		return invalid("action", "%q is not a rollout action: want promote, pause, resume or abort", truncate(action))
	}
	return nil
}

// Validate checks an action's body: the reason is one line of printable
// text (spaces allowed) of at most MaxRolloutReason bytes.
func (a RolloutAction) Validate() error {
	switch {
	case len(a.Reason) > MaxRolloutReason:
		return invalid("reason", "is longer than %d bytes", MaxRolloutReason)
	case !utf8.ValidString(a.Reason):
		return invalid("reason", "is not valid UTF-8")
	case strings.IndexFunc(a.Reason, func(r rune) bool { return !unicode.IsGraphic(r) }) >= 0:
		// Graphic excludes control and format characters and line
		// breaks, which could forge lines or reorder text where it is shown.
		return invalid("reason", "must be one line of printable text")
	}
	return nil
}

// Rollouts returns the rollouts of function name, newest first, as the
// API orders them.
func (c *Client) Rollouts(ctx context.Context, name string) ([]Rollout, error) {
	path, err := c.functionPath(name, "/rollouts")
	if err != nil {
		return nil, err
	}
	var list RolloutList
	if _, err := c.unary(ctx, http.MethodGet, path, nil, &list, http.StatusOK); err != nil {
		return nil, err
	}
	if list.Items == nil {
		list.Items = []Rollout{}
	}
	return list.Items, nil
}

// Rollout returns rollout id of function name. A rollout's ID is its
// canary revision's name (hello-00002); an unknown one is 404
// (IsNotFound).
func (c *Client) Rollout(ctx context.Context, name, id string) (Rollout, error) {
	path, err := c.rolloutPath(name, id)
	if err != nil {
		return Rollout{}, err
	}
	var out Rollout
	if _, err := c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK); err != nil {
		return Rollout{}, err
	}
	return out, checkRolloutAnswer(out, id)
}

// RolloutAction applies action (RolloutPromote, RolloutPause,
// RolloutResume or RolloutAbort) to rollout id of function name and
// returns the rollout as it is afterwards. reason is recorded with a
// promote or an abort; "" leaves the server's default. An action the
// rollout's phase forbids, such as resuming one that succeeded, is 409
// (IsConflict) with the server's reason.
func (c *Client) RolloutAction(ctx context.Context, name, id, action, reason string) (Rollout, error) {
	if err := ValidateRolloutAction(action); err != nil {
		return Rollout{}, err
	}
	body := RolloutAction{Reason: reason}
	if err := body.Validate(); err != nil {
		return Rollout{}, err
	}
	path, err := c.rolloutPath(name, id)
	if err != nil {
		return Rollout{}, err
	}
	var out Rollout
	if _, err := c.unary(ctx, http.MethodPost, path+"/"+action, body, &out, http.StatusOK); err != nil {
		return Rollout{}, err
	}
	return out, checkRolloutAnswer(out, id)
}

// rolloutPath checks the rollout id locally, as functionPath does the
// function name: it becomes a path segment.
func (c *Client) rolloutPath(name, id string) (string, error) {
	if err := ValidateQualifiedName("rollout id", id); err != nil {
		return "", err
	}
	return c.functionPath(name, "/rollouts/", id)
}

// checkRolloutAnswer refuses a 200 that is not the rollout asked for (an
// empty or null body, or another rollout), so a caller never mistakes it
// for a rollout without a phase.
func checkRolloutAnswer(r Rollout, id string) error {
	if r.ID != id {
		return fmt.Errorf("the API answered with rollout %q for rollout %q", truncate(r.ID), id)
	}
	return nil
}
