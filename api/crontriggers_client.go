package api

import (
	"context"
	"net/http"
)

// cronTriggerPath is .../functions/{fn}/crontriggers[/{name}], both names
// checked, since they become path segments.
func (c *Client) cronTriggerPath(fn, name string, rest ...string) (string, error) {
	path, err := c.functionPath(fn, "/crontriggers")
	if err != nil {
		return "", err
	}
	if name == "" {
		return path, nil
	}
	if err := ValidateName("cron trigger name", name); err != nil {
		return "", err
	}
	path += "/" + name
	for _, r := range rest {
		path += r
	}
	return path, nil
}

// PutCronTrigger creates or replaces trigger name of function fn; created
// says it is new.
func (c *Client) PutCronTrigger(ctx context.Context, fn, name string, spec CronTriggerSpec) (tr CronTrigger, created bool, err error) {
	path, err := c.cronTriggerPath(fn, name)
	if err != nil {
		return tr, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, spec, &tr, http.StatusOK, http.StatusCreated)
	return tr, err == nil && status == http.StatusCreated, err
}

// CronTrigger returns trigger name of function fn with its status.
func (c *Client) CronTrigger(ctx context.Context, fn, name string) (CronTrigger, error) {
	var tr CronTrigger
	path, err := c.cronTriggerPath(fn, name)
	if err != nil {
		return tr, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &tr, http.StatusOK)
	return tr, err
}

// CronTriggers returns function fn's triggers by name.
func (c *Client) CronTriggers(ctx context.Context, fn string) ([]CronTrigger, error) {
	path, err := c.cronTriggerPath(fn, "")
	if err != nil {
		return nil, err
	}
	var list CronTriggerList
	if _, err := c.unary(ctx, http.MethodGet, path, nil, &list, http.StatusOK); err != nil {
		return nil, err
	}
	if list.Items == nil {
		list.Items = []CronTrigger{}
	}
	return list.Items, nil
}

// DeleteCronTrigger deletes trigger name of function fn and its run
// records; invocations already queued go on.
func (c *Client) DeleteCronTrigger(ctx context.Context, fn, name string) error {
	path, err := c.cronTriggerPath(fn, name)
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent)
	return err
}

// RunCronTrigger fires a run of trigger name now and returns it, with
// its invocation's id.
func (c *Client) RunCronTrigger(ctx context.Context, fn, name string) (CronRun, error) {
	var run CronRun
	path, err := c.cronTriggerPath(fn, name, "/run")
	if err != nil {
		return run, err
	}
	_, err = c.unary(ctx, http.MethodPost, path, nil, &run, http.StatusAccepted)
	return run, err
}
