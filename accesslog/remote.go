package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
)

// Remote reads a function's access lines from routers on other machines,
// through their Handler: a tail is the newest lines of all routers
// together (lines start with a fixed-width UTC time, so they sort as
// strings), and following streams every router's new lines as they come.
type Remote struct {
	// Addrs lists the routers' host:port to read from.
	Addrs func(ctx context.Context) ([]string, error)
	// Token is the bearer token the routers want.
	Token  string
	Client *http.Client
}

// Read writes q's lines from every router to w. A router that does not
// answer is skipped; its error is returned at the end.
func (r *Remote) Read(ctx context.Context, w io.Writer, q Query) error {
	addrs, err := r.Addrs(ctx)
	if err != nil {
		return fmt.Errorf("list routers: %w", err)
	}
	once := q
	once.Follow = false
	var (
		mu    sync.Mutex
		lines []string
		errs  []error
		wg    sync.WaitGroup
	)
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got []string
			err := r.stream(ctx, addr, once, func(line string) error { got = append(got, line); return nil })
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, got...)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	slices.Sort(lines)
	if q.Tail > 0 && len(lines) > q.Tail {
		lines = lines[len(lines)-q.Tail:]
	}
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return err
		}
	}
	if !q.Follow {
		return errors.Join(errs...)
	}
	// Following starts from the end of each router's ring: a line
	// written between the read above and the follow's start is missed
	// rather than shown twice.
	errs = errs[:0]
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.stream(ctx, addr, Query{Function: q.Function, Follow: true, FromEnd: true}, func(line string) error {
				mu.Lock()
				defer mu.Unlock()
				_, err := io.WriteString(w, line+"\n")
				return err
			})
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// stream calls each for every line addr sends for q.
func (r *Remote) stream(ctx context.Context, addr string, q Query, each func(string) error) error {
	v := url.Values{"function": {q.Function}, "tail": {strconv.Itoa(q.Tail)}, "follow": {strconv.FormatBool(q.Follow)}}
	if q.FromEnd {
		v.Set("from", "end")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/access?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("access log from router %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("access log from router %s: %s: %s", addr, resp.Status, msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 16<<10), 1<<20)
	for sc.Scan() {
		if err := each(sc.Text()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("access log from router %s: %w", addr, err)
	}
	return nil
}
