package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

// maxShutdown bounds the graceful drain; the platform's SIGKILL after its own
// grace period is the real limit.
const maxShutdown = 30 * time.Second

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	faults, err := parseFaults(getenv)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return fmt.Errorf("listen on port %s: %w", port, err)
	}
	srv := &http.Server{Handler: newHandler(getenv, os.Exit, faults), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "hello listening on :%s (revision %q)\n", port, getenv("EBB_REVISION"))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stdout, "hello: signal received, draining")
	sctx, cancel := context.WithTimeout(context.Background(), maxShutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintln(stdout, "hello: drained, bye")
	return nil
}

// faults are the test switches of / (HELLO_FAIL_PERCENT, HELLO_DELAY):
// they make a revision that fails or is slow on purpose, for rollout tests.
type faults struct {
	// failPercent of the requests to / answer 500, chosen per request.
	failPercent int
	// delay is waited before / answers, failing or not.
	delay time.Duration
	// roll returns a number in [0, n); nil means math/rand/v2's IntN.
	roll func(n int) int
}

// probeAgent is the User-Agent of ebb's readiness probe (GET /, any status
// below 500 passes), which the faults leave alone: a revision that failed
// its probe would never start, and a canary must start to be judged.
const probeAgent = "ebb-probe"

// parseFaults reads the test switches from the environment. A value that
// does not parse is an error, so a typo fails the replica at its start
// instead of running a test against a healthy function.
func parseFaults(getenv func(string) string) (faults, error) {
	var f faults
	if v := getenv("HELLO_FAIL_PERCENT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return f, fmt.Errorf("HELLO_FAIL_PERCENT=%q: want a whole number from 0 to 100", v)
		}
		f.failPercent = n
	}
	if v := getenv("HELLO_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 10*time.Minute {
			return f, fmt.Errorf("HELLO_DELAY=%q: want a Go duration from 0 to 10m, such as 50ms", v)
		}
		f.delay = d
	}
	return f, nil
}

// fail reports whether this request to / is one of the failPercent.
func (f faults) fail() bool {
	if f.failPercent <= 0 {
		return false
	}
	roll := f.roll
	if roll == nil {
		roll = rand.IntN
	}
	return roll(100) < f.failPercent
}

func newHandler(getenv func(string) string, exit func(int), f faults) http.Handler {
	mux := http.NewServeMux()
	var load loadCounter
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		f := f
		if r.UserAgent() == probeAgent {
			f = faults{} // the revision still starts, as a bad release does
		}
		if f.delay > 0 {
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if f.fail() {
			http.Error(w, fmt.Sprintf("failing on purpose (HELLO_FAIL_PERCENT=%d)\nrevision=%s", f.failPercent, getenv("EBB_REVISION")), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from ebb\nfunction=%s\nrevision=%s\nreplica=%s\n",
			getenv("EBB_FUNCTION"), getenv("EBB_REVISION"), getenv("EBB_REPLICA"))
		if greeting := getenv("GREETING"); greeting != "" {
			fmt.Fprintf(w, "greeting=%s\n", greeting)
		}
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > 10*time.Minute {
			http.Error(w, "d must be a duration between 0 and 10m, such as 100ms", http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("flush") == "1" {
			// Headers first, so a client can tell the request is in flight.
			w.WriteHeader(http.StatusOK)
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			fmt.Fprintf(w, "slept %s\n", d)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		n := 5
		if v := r.URL.Query().Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
				http.Error(w, "n must be between 1 and 10000", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fl, _ := w.(http.Flusher)
		for i := 0; i < n; i++ {
			if i > 0 {
				select {
				case <-time.After(10 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			if fl != nil {
				fl.Flush()
			}
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range r.Header {
			for _, v := range vs {
				w.Header().Add("X-Echo-"+k, v)
			}
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		if _, err := io.Copy(w, r.Body); err != nil {
			return // the client went away; nothing useful to report to it
		}
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, strings.Join(env, "\n"))
	})
	mux.HandleFunc("/discard", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "bytes=%d\n", n)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "replica=%s\nrequests=%d\nmax_inflight=%d\n", getenv("EBB_REPLICA"), load.requests.Load(), load.max.Load())
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "hello: crashing on request")
		exit(1)
	})
	seen := newSeenLog(time.Now)
	mux.HandleFunc("/seen", seen.serve(getenv("EBB_REPLICA")))
	mux.HandleFunc("/flaky", flaky)
	return seen.wrap(load.wrap(mux))
}

// loadCounter tracks requests and the peak of concurrent requests, so tests
// can check that the platform never sent more than a replica's hard limit.
// /stats itself is not counted.
type loadCounter struct {
	inflight, max, requests atomic.Int64
}

func (c *loadCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stats" {
			next.ServeHTTP(w, r)
			return
		}
		c.requests.Add(1)
		n := c.inflight.Add(1)
		defer c.inflight.Add(-1)
		for {
			m := c.max.Load()
			if n <= m || c.max.CompareAndSwap(m, n) {
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}
