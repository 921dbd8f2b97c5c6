package main

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlaky(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		attempt    string
		wantStatus int
		wantBody   string
	}{
		{"first attempt of two failing", "/flaky?fail=2", "1", 503, "failing attempt 1"},
		{"second attempt of two failing", "/flaky?fail=2", "2", 503, "failing attempt 2"},
		{"third attempt succeeds", "/flaky?fail=2", "3", 200, "succeeded at attempt 3"},
		{"no header is attempt 1", "/flaky?fail=1", "", 503, "failing attempt 1"},
		{"fail 0 never fails", "/flaky?fail=0", "1", 200, "succeeded at attempt 1"},
		{"always", "/flaky?fail=-1", "57", 503, "failing attempt 57"},
		{"bad fail", "/flaky?fail=x", "1", 400, "fail must be"},
		{"missing fail", "/flaky", "1", 400, "fail must be"},
		{"fail below -1", "/flaky?fail=-2", "1", 400, "fail must be"},
		{"bad attempt", "/flaky?fail=1", "zero", 400, "X-Ebb-Attempt"},
		{"attempt 0", "/flaky?fail=1", "0", 400, "X-Ebb-Attempt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tt.target, nil)
			if tt.attempt != "" {
				req.Header.Set(headerAttempt, tt.attempt)
			}
			rec := httptest.NewRecorder()
			flaky(rec, req)
			assert.Equal(t, tt.wantStatus, rec.Code)
			assert.Contains(t, rec.Body.String(), tt.wantBody)
		})
	}
}

func TestSeen(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	env := map[string]string{"EBB_REPLICA": "hello-00001-abcde"}
	h := newHandler(func(k string) string { return env[k] }, func(int) {}, faults{})
	send := func(path, id, attempt, scheduled string) int {
		req := httptest.NewRequest("POST", path, nil)
		if id != "" {
			req.Header.Set(headerInvocationID, id)
			req.Header.Set(headerAttempt, attempt)
		}
		if scheduled != "" {
			req.Header.Set(headerCronScheduled, scheduled)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	report := func() seenReport {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/seen", nil))
		require.Equal(t, 200, rec.Code)
		var r seenReport
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r), rec.Body.String())
		return r
	}
	require.Empty(t, report().Invocations)

	assert.Equal(t, 503, send("/flaky?fail=1", "a", "1", ""))
	assert.Equal(t, 200, send("/flaky?fail=1", "a", "2", ""))
	assert.Equal(t, 200, send("/", "b", "1", "2026-12-06T10:00:02Z"))
	assert.Equal(t, 200, send("/", "", "", "")) // not an async delivery
	// A request for /seen naming an id is not a delivery either.
	req := httptest.NewRequest("GET", "/seen", nil)
	req.Header.Set(headerInvocationID, "c")
	h.ServeHTTP(httptest.NewRecorder(), req)

	r := report()
	assert.Equal(t, "hello-00001-abcde", r.Replica)
	require.Len(t, r.Invocations, 2)
	assert.Equal(t, 2, r.Invocations["a"].Count)
	assert.Equal(t, []int{1, 2}, r.Invocations["a"].Attempts)
	assert.Equal(t, "/flaky", r.Invocations["a"].Path)
	assert.Equal(t, 1, r.Invocations["b"].Count)
	assert.Equal(t, "2026-12-06T10:00:02Z", r.Invocations["b"].Scheduled)

	// The clock is the log's own.
	s := newSeenLog(func() time.Time { return now })
	s.record("x", httptest.NewRequest("POST", "/", nil))
	assert.Equal(t, now, s.byID["x"].First)
}
