package nodelogs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
)

// Query selects log lines, as the node agent's /v1/logs takes them.
type Query struct {
	Function string
	Revision string
	// Tail is the number of lines to start from, the newest of every
	// node's lines together; 0 means all.
	Tail   int
	Follow bool
}

// Reader fans a log query out to every node agent.
type Reader struct {
	Store  store.Store
	Token  string
	Client *http.Client
}

// Read writes the lines of every node for q to w, one whole line at a time,
// merged by the time they were written; Tail counts the lines of all nodes
// together. With Follow it then streams new lines from all nodes at once,
// in the order they arrive, until ctx ends.
func (r *Reader) Read(ctx context.Context, w io.Writer, q Query) error {
	kvs, _, err := store.ListJSON[store.Node](ctx, r.Store, store.PrefixNodes)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var nodes []store.Node
	for _, kv := range kvs {
		if kv.Value.AgentAddr != "" {
			nodes = append(nodes, kv.Value)
		}
	}
	last, errs := r.readMerged(ctx, w, nodes, q)
	if q.Follow {
		// A node that did not answer is not followed: from nothing, it
		// would send every line it has instead of a tail.
		var answered []store.Node
		for _, n := range nodes {
			if _, ok := last[n.Name]; ok {
				answered = append(answered, n)
			}
		}
		errs = append(errs, r.follow(ctx, w, answered, q, last)...)
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// stream is one node's timestamped lines, read one ahead for the merge.
type stream struct {
	node string
	body io.ReadCloser
	sc   *bufio.Scanner
	at   int64  // when line was written, Unix nanoseconds
	line []byte // the head line without its timestamp; nil once done
	err  error
}

func (s *stream) advance() {
	if s.sc.Scan() {
		s.at, s.line, s.err = logring.SplitTimestamp(s.sc.Bytes())
		if s.err == nil {
			return
		}
	} else {
		s.err = s.sc.Err()
	}
	s.line = nil
	if s.err != nil {
		s.err = fmt.Errorf("logs from node %s: %w", s.node, s.err)
	}
}

// readMerged reads every node's lines once, without following, and writes
// them merged by time: each node sends its lines in time order, so a merge
// of the heads keeps no more than Tail lines in memory. It returns the time
// of the last line read from each node that answered (0 if it sent none),
// which following goes on from.
func (r *Reader) readMerged(ctx context.Context, w io.Writer, nodes []store.Node, q Query) (map[string]int64, []error) {
	streams := make([]*stream, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := q
			once.Follow = false
			body, err := r.open(ctx, n, once, 0)
			if err != nil {
				errs[i] = err
				return
			}
			s := &stream{node: n.Name, body: body, sc: scanner(body)}
			s.advance()
			streams[i] = s
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range streams {
			if s != nil {
				s.body.Close()
			}
		}
	}()

	last := map[string]int64{}
	for _, s := range streams {
		if s != nil {
			last[s.node] = 0
		}
	}
	tail := newTail(q.Tail)
	var werr error
	for werr == nil {
		var next *stream
		for _, s := range streams {
			// On equal times the node listed first goes first.
			if s != nil && s.line != nil && (next == nil || s.at < next.at) {
				next = s
			}
		}
		if next == nil {
			break
		}
		last[next.node] = next.at
		if tail != nil {
			tail.add(next.line)
		} else {
			werr = writeLine(w, next.line)
		}
		next.advance()
	}
	if werr == nil && tail != nil {
		werr = tail.writeTo(w)
	}
	for i, s := range streams {
		if s != nil && s.err != nil {
			errs[i] = s.err
		}
	}
	return last, append(errs, werr)
}

// follow streams every node's new lines, each from after the last line
// readMerged had from it, until ctx ends or every node's stream does.
func (r *Reader) follow(ctx context.Context, w io.Writer, nodes []store.Node, q Query, last map[string]int64) []error {
	var mu sync.Mutex // one line at a time, whichever node it came from
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.followNode(ctx, w, &mu, n, q, last[n.Name])
		}()
	}
	wg.Wait()
	return errs
}

func (r *Reader) followNode(ctx context.Context, w io.Writer, mu *sync.Mutex, n store.Node, q Query, since int64) error {
	// Lines written in the very nanosecond of the last one read could be
	// missed; a node's clock makes that as good as impossible.
	q.Tail = 0
	body, err := r.open(ctx, n, q, since)
	if err != nil {
		return err
	}
	defer body.Close()
	s := &stream{node: n.Name, body: body, sc: scanner(body)}
	for s.advance(); s.line != nil; s.advance() {
		mu.Lock()
		err := writeLine(w, s.line)
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return s.err
}

// open asks node n for its lines written after since, with timestamps for
// the merge.
func (r *Reader) open(ctx context.Context, n store.Node, q Query, since int64) (io.ReadCloser, error) {
	v := url.Values{
		"function":   {q.Function},
		"tail":       {strconv.Itoa(q.Tail)},
		"follow":     {strconv.FormatBool(q.Follow)},
		"timestamps": {"true"},
	}
	if q.Revision != "" {
		v.Set("revision", q.Revision)
	}
	if since > 0 {
		v.Set("since", strconv.FormatInt(since, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.AgentAddr+"/v1/logs?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("logs from node %s: %w", n.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("logs from node %s: %s: %s", n.Name, resp.Status, msg)
	}
	return resp.Body, nil
}

func scanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return sc
}

func writeLine(w io.Writer, line []byte) error {
	_, err := fmt.Fprintf(w, "%s\n", line)
	return err
}

// tail keeps the last n lines added, in a ring.
type tail struct {
	lines [][]byte
	next  int
	full  bool
}

// newTail returns a tail of n lines, or nil for n == 0: keep everything.
func newTail(n int) *tail {
	if n <= 0 {
		return nil
	}
	return &tail{lines: make([][]byte, n)}
}

func (t *tail) add(line []byte) {
	t.lines[t.next] = append(t.lines[t.next][:0], line...)
	t.next++
	if t.next == len(t.lines) {
		t.next, t.full = 0, true
	}
}

func (t *tail) writeTo(w io.Writer) error {
	if t.full {
		for _, l := range t.lines[t.next:] {
			if err := writeLine(w, l); err != nil {
				return err
			}
		}
	}
	for _, l := range t.lines[:t.next] {
		if err := writeLine(w, l); err != nil {
			return err
		}
	}
	return nil
}
