package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Headers the platform sets on asynchronous deliveries and cron runs
// (ebb's invoker and cron name them; hello must not import ebb).
const (
	headerInvocationID  = "X-Ebb-Invocation-Id"
	headerAttempt       = "X-Ebb-Attempt"
	headerCronScheduled = "X-Ebb-Cron-Scheduled"
)

// seenLog records every asynchronous delivery the replica gets, by
// invocation id, so an end-to-end test can count redeliveries (/seen).
// It lives in memory: the replica's life is the record's.
type seenLog struct {
	mu   sync.Mutex
	byID map[string]*seenEntry
	now  func() time.Time
}

// seenEntry is one invocation's deliveries to this replica.
type seenEntry struct {
	Count int `json:"count"`
	// First is when the first delivery arrived, Attempts the X-Ebb-Attempt
	// of each delivery in arrival order.
	First    time.Time `json:"first"`
	Attempts []int     `json:"attempts,omitempty"`
	// Scheduled is a cron run's X-Ebb-Cron-Scheduled, as sent.
	Scheduled string `json:"scheduled,omitempty"`
	Path      string `json:"path"`
}

// seenReport is GET /seen.
type seenReport struct {
	Replica     string                `json:"replica"`
	Invocations map[string]*seenEntry `json:"invocations"`
}

func newSeenLog(now func() time.Time) *seenLog {
	return &seenLog{byID: map[string]*seenEntry{}, now: now}
}

// wrap records each request carrying an invocation id before next
// serves it; /seen itself is not recorded.
func (s *seenLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(headerInvocationID); id != "" && r.URL.Path != "/seen" {
			s.record(id, r)
		}
		next.ServeHTTP(w, r)
	})
}

func (s *seenLog) record(id string, r *http.Request) {
	at := s.now()
	attempt, _ := strconv.Atoi(r.Header.Get(headerAttempt))
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byID[id]
	if e == nil {
		e = &seenEntry{First: at, Scheduled: r.Header.Get(headerCronScheduled), Path: r.URL.Path}
		s.byID[id] = e
	}
	e.Count++
	if len(e.Attempts) < 100 {
		e.Attempts = append(e.Attempts, attempt)
	}
}

func (s *seenLog) serve(replica string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		report := seenReport{Replica: replica, Invocations: make(map[string]*seenEntry, len(s.byID))}
		for id, e := range s.byID {
			c := *e
			c.Attempts = append([]int(nil), e.Attempts...)
			report.Invocations[id] = &c
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(report)
	}
}

// flaky is /flaky?fail=N: it answers 503 to attempts 1 to N of an
// invocation (by X-Ebb-Attempt) and 200 after, so a test sees retries end
// in success; fail=-1 fails every attempt, for dead letters. A request
// without X-Ebb-Attempt counts as attempt 1.
func flaky(w http.ResponseWriter, r *http.Request) {
	fail, err := strconv.Atoi(r.URL.Query().Get("fail"))
	if err != nil || fail < -1 || fail > 1000 {
		http.Error(w, "fail must be a whole number from -1 (always) to 1000", http.StatusBadRequest)
		return
	}
	attempt := 1
	if v := r.Header.Get(headerAttempt); v != "" {
		if attempt, err = strconv.Atoi(v); err != nil || attempt < 1 {
			http.Error(w, headerAttempt+" must be a positive number", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if fail == -1 || attempt <= fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "failing attempt %d on purpose\n", attempt)
		return
	}
	fmt.Fprintf(w, "succeeded at attempt %d\n", attempt)
}
