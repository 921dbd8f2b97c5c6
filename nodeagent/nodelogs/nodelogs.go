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

	"github.com/ebbrun/ebb/store"
)

// Query selects log lines, as the node agent's /v1/logs takes them.
type Query struct {
	Function string
	Revision string
	Tail     int
	Follow   bool
}

// Reader fans a log query out to every node agent.
type Reader struct {
	Store  store.Store
	Token  string
	Client *http.Client
}

// Read writes every node's lines for q to w, one whole line at a time.
// With Follow it streams from all nodes at once until ctx ends.
func (r *Reader) Read(ctx context.Context, w io.Writer, q Query) error {
	nodes, _, err := store.ListJSON[store.Node](ctx, r.Store, store.PrefixNodes)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var mu sync.Mutex // one line at a time, whichever node it came from
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		if n.Value.AgentAddr == "" {
			continue
		}
		read := func() { errs[i] = r.readNode(ctx, n.Value, q, w, &mu) }
		if !q.Follow {
			read() // without follow, node after node keeps each node's order
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); read() }()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

func (r *Reader) readNode(ctx context.Context, n store.Node, q Query, w io.Writer, mu *sync.Mutex) error {
	v := url.Values{"function": {q.Function}, "tail": {strconv.Itoa(q.Tail)}, "follow": {strconv.FormatBool(q.Follow)}}
	if q.Revision != "" {
		v.Set("revision", q.Revision)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.AgentAddr+"/v1/logs?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return fmt.Errorf("logs from node %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("logs from node %s: %s: %s", n.Name, resp.Status, msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		_, err := fmt.Fprintf(w, "%s\n", sc.Bytes())
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs from node %s: %w", n.Name, err)
	}
	return nil
}
