package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// jobsPath is the client's namespace's job list, or job name in it; the
// default namespace keeps the /v1/jobs paths.
func (c *Client) jobsPath(name string, rest string) (string, error) {
	base := "/v1/jobs"
	if ns := c.Namespace(); ns != DefaultNamespace {
		if err := ValidateName("namespace", ns); err != nil {
			return "", err
		}
		base = "/v1/namespaces/" + ns + "/jobs"
	}
	if name == "" {
		return base, nil
	}
	if err := ValidateName("job name", name); err != nil {
		return "", err
	}
	return base + "/" + name + rest, nil
}

// CreateJob creates job name in the client's namespace. created is false
// when a job of that name and spec existed already; another spec is a 409.
func (c *Client) CreateJob(ctx context.Context, name string, spec JobSpec) (job Job, created bool, err error) {
	path, err := c.jobsPath(name, "")
	if err != nil {
		return job, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, spec, &job, http.StatusOK, http.StatusCreated)
	return job, err == nil && status == http.StatusCreated, err
}

// GetJob returns job name with its status.
func (c *Client) GetJob(ctx context.Context, name string) (Job, error) {
	var out Job
	path, err := c.jobsPath(name, "")
	if err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out, err
}

// ListJobs returns the jobs of the client's namespace.
func (c *Client) ListJobs(ctx context.Context) ([]Job, error) {
	path, err := c.jobsPath("", "")
	if err != nil {
		return nil, err
	}
	var out JobList
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out.Jobs, err
}

// DeleteJob deletes job name; its pods still running are killed.
func (c *Client) DeleteJob(ctx context.Context, name string) error {
	path, err := c.jobsPath(name, "")
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent)
	return err
}

// JobLogs streams job name's logs, of all its attempts; the caller closes
// the stream. opts.Revision is ignored.
func (c *Client) JobLogs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error) {
	path, err := c.jobsPath(name, "/logs")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	return c.stream(ctx, path, q, "text/plain")
}
