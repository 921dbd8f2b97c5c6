package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// WriteOptions are the preconditions and mode of a PUT.
type WriteOptions struct {
	// IfMatch is the resourceVersion the object must still have, sent as
	// If-Match; "*" means it must exist. Empty writes whatever the object
	// holds (last writer wins). A mismatch is a 409 (IsConflict).
	IfMatch string
	// DryRun asks the server to validate everything and write nothing
	// (?dryRun=server); the answer is what the write would give.
	DryRun bool
}

func (o WriteOptions) query() url.Values {
	if !o.DryRun {
		return nil
	}
	return url.Values{"dryRun": {"server"}}
}

func (o WriteOptions) header() http.Header {
	if o.IfMatch == "" {
		return nil
	}
	if o.IfMatch == "*" {
		return http.Header{"If-Match": {"*"}}
	}
	return http.Header{"If-Match": {strconv.Quote(o.IfMatch)}}
}

// ListOptions select one page of a list. The zero value lists everything.
type ListOptions struct {
	// Limit is the page size, 1-1000; 0 means no limit.
	Limit int
	// Continue is the token of the previous page's answer.
	Continue string
	// LabelSelector filters functions: "app=x,tier=web".
	LabelSelector string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	return q
}

// IsGone reports whether err is a 410: a watch's resourceVersion was
// compacted away.
func IsGone(err error) bool { return apiStatus(err) == http.StatusGone }

// do runs a bounded request with a query and headers whose response is
// one JSON document.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, h http.Header, in, out any, ok ...int) (int, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b) // NewRequest sets ContentLength and GetBody from it
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return c.roundTrip(req, out, ok...)
}

// PutFunctionWith is PutFunction with preconditions or a dry run.
func (c *Client) PutFunctionWith(ctx context.Context, name string, spec FunctionSpec, opts WriteOptions) (fn Function, created bool, err error) {
	path, err := c.functionPath(name)
	if err != nil {
		return Function{}, false, err
	}
	status, err := c.do(ctx, http.MethodPut, path, opts.query(), opts.header(), spec, &fn, http.StatusCreated, http.StatusOK)
	return fn, err == nil && status == http.StatusCreated, err
}

// PutFunctionIf writes the function only if it is still at
// resourceVersion rv (a 409 otherwise, IsConflict).
func (c *Client) PutFunctionIf(ctx context.Context, name string, spec FunctionSpec, rv string) (Function, bool, error) {
	return c.PutFunctionWith(ctx, name, spec, WriteOptions{IfMatch: rv})
}

// SetTrafficWith is SetTraffic with preconditions or a dry run.
func (c *Client) SetTrafficWith(ctx context.Context, name string, targets []TrafficTarget, opts WriteOptions) (Function, error) {
	var fn Function
	path, err := c.functionPath(name, "/traffic")
	if err != nil {
		return fn, err
	}
	_, err = c.do(ctx, http.MethodPut, path, opts.query(), opts.header(), TrafficRequest{Traffic: targets}, &fn, http.StatusOK)
	return fn, err
}

// CreateNamespaceWith is CreateNamespaceWithQuota with preconditions or a dry run.
func (c *Client) CreateNamespaceWith(ctx context.Context, ns string, spec NamespaceSpec, opts WriteOptions) (out Namespace, created bool, err error) {
	path, err := namespacePath(ns)
	if err != nil {
		return out, false, err
	}
	status, err := c.do(ctx, http.MethodPut, path, opts.query(), opts.header(), spec, &out, http.StatusCreated, http.StatusOK)
	return out, err == nil && status == http.StatusCreated, err
}

// SetQuotaWith is SetQuota with preconditions (on the namespace record's
// resourceVersion) or a dry run.
func (c *Client) SetQuotaWith(ctx context.Context, ns string, q Quota, opts WriteOptions) (Quota, error) {
	var out Quota
	path, err := namespacePath(ns)
	if err != nil {
		return out, err
	}
	_, err = c.do(ctx, http.MethodPut, path+"/quota", opts.query(), opts.header(), q, &out, http.StatusOK)
	return out, err
}

// PutSecretWith is PutSecret with preconditions or a dry run.
func (c *Client) PutSecretWith(ctx context.Context, name string, data map[string][]byte, opts WriteOptions) (info SecretInfo, created bool, err error) {
	path, err := c.secretsPath(name)
	if err != nil {
		return info, false, err
	}
	status, err := c.do(ctx, http.MethodPut, path, opts.query(), opts.header(), SecretData{Data: data}, &info, http.StatusCreated, http.StatusOK)
	return info, err == nil && status == http.StatusCreated, err
}

// ListFunctionsPage returns one page of the client's namespace's functions.
func (c *Client) ListFunctionsPage(ctx context.Context, opts ListOptions) (FunctionList, error) {
	var out FunctionList
	path, err := c.functionsPath()
	if err != nil {
		return out, err
	}
	_, err = c.do(ctx, http.MethodGet, path, opts.query(), nil, nil, &out, http.StatusOK)
	return out, err
}

// ListFunctionsSelected returns every function matching a label selector
// ("app=x,tier=web"), fetching every page.
func (c *Client) ListFunctionsSelected(ctx context.Context, selector string) ([]Function, error) {
	var all []Function
	opts := ListOptions{LabelSelector: selector, Limit: listPageSize}
	for {
		page, err := c.ListFunctionsPage(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Functions...)
		if page.Continue == "" {
			return all, nil
		}
		opts.Continue = page.Continue
	}
}

// listPageSize is the page size the List methods ask for.
const listPageSize = 500

// listAll fetches every page of a list at path: page decodes one answer
// into the caller's items and returns its continue token. It asks for no
// limit, so a server answers everything at once (as servers before
// pagination did), and follows continue tokens should one page anyway.
func (c *Client) listAll(ctx context.Context, path string, page func(body []byte) (string, error)) error {
	q := url.Values{}
	for {
		var raw json.RawMessage
		if _, err := c.do(ctx, http.MethodGet, path, q, nil, nil, &raw, http.StatusOK); err != nil {
			return err
		}
		next, err := page(raw)
		if err != nil {
			return fmt.Errorf("decode %s answer: %w", path, err)
		}
		if next == "" {
			return nil
		}
		q.Set("continue", next)
	}
}

// listPages collects every item of a paged list.
func listPages[L any, T any](ctx context.Context, c *Client, path string, items func(*L) ([]T, string)) ([]T, error) {
	all := []T{}
	err := c.listAll(ctx, path, func(body []byte) (string, error) {
		var l L
		if err := json.Unmarshal(body, &l); err != nil {
			return "", err
		}
		got, next := items(&l)
		all = append(all, got...)
		return next, nil
	})
	return all, err
}

// WatchOptions select what WatchFunctions follows.
type WatchOptions struct {
	// ResourceVersion resumes after that version: every change since, in
	// order. Empty starts with the current functions as ADDED.
	ResourceVersion string
	// LabelSelector filters functions: "app=x,tier=web".
	LabelSelector string
}

// WatchFunctions follows the client's namespace's functions. The channel
// delivers events in store order, BOOKMARKs included, and closes when ctx
// ends or the stream breaks (then its last event is a WatchError with
// Err set). A resourceVersion the server has compacted is an error for
// which IsGone holds: list again and watch from the list.
func (c *Client) WatchFunctions(ctx context.Context, opts WatchOptions) (<-chan WatchEvent, error) {
	path, err := c.functionsPath()
	if err != nil {
		return nil, err
	}
	q := url.Values{"watch": {"true"}}
	if opts.ResourceVersion != "" {
		q.Set("resourceVersion", opts.ResourceVersion)
	}
	if opts.LabelSelector != "" {
		q.Set("labelSelector", opts.LabelSelector)
	}
	body, err := c.stream(ctx, path, q, "application/x-ndjson")
	if err != nil {
		return nil, err
	}
	out := make(chan WatchEvent, 16)
	go func() {
		defer close(out)
		defer body.Close()
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var ev WatchEvent
			if err := json.Unmarshal(line, &ev); err != nil {
				sendWatch(ctx, out, WatchEvent{Type: WatchError, Err: fmt.Errorf("watch: bad event %q: %w", oneLine(string(line), 200), err)})
				return
			}
			if !sendWatch(ctx, out, ev) {
				return
			}
		}
		err := sc.Err()
		if ctx.Err() != nil {
			return // the caller ended it
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		sendWatch(ctx, out, WatchEvent{Type: WatchError, Err: fmt.Errorf("watch %s: %w", strings.TrimSpace(path), err)})
	}()
	return out, nil
}

func sendWatch(ctx context.Context, out chan<- WatchEvent, ev WatchEvent) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
