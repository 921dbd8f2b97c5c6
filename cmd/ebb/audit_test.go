package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// auditServer answers GET /v1/audit with events, remembering the query.
type auditServer struct {
	mu     sync.Mutex
	query  string
	status int // non-zero: answer this error instead
	list   api.AuditList
}

func newAuditCLI(t *testing.T, list api.AuditList) (cli, *auditServer) {
	s := &auditServer{list: list}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodGet || r.URL.Path != "/v1/audit" || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		s.query = r.URL.RawQuery
		if s.status != 0 {
			w.WriteHeader(s.status)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "forbidden", Message: "audit:read"}})
			return
		}
		_ = json.NewEncoder(w).Encode(s.list)
	}))
	t.Cleanup(srv.Close)
	return cli{env: map[string]string{"EBB_API": srv.URL, "EBB_TOKEN": "tok", "HOME": t.TempDir()}}, s
}

func TestAudit(t *testing.T) {
	list := api.AuditList{Events: []api.AuditEvent{
		{Time: t0, TokenID: "admin", Namespace: "default", Verb: "update", Object: "functions/hello", Status: 200, RequestID: "r1"},
		{Time: t0.Add(time.Second), TokenID: "tk_dev", Namespace: "team-a", Verb: "delete", Object: "functions/a\nb", Status: 404, Code: "not_found"},
		{Time: t0.Add(2 * time.Second), TokenID: "admin", Verb: "create", Object: "images", Status: 201},
	}}
	cases := []struct {
		name  string
		args  []string
		query string
		out   string
	}{
		{
			name: "table",
			args: []string{"audit"},
			out: "TIME                  TOKEN   NAMESPACE  VERB    OBJECT            RESULT         REQUEST\n" +
				"2025-03-01T12:00:00Z  admin   default    update  functions/hello   200            r1\n" +
				"2025-03-01T12:00:01Z  tk_dev  team-a     delete  \"functions/a\\nb\"  404/not_found  -\n" +
				"2025-03-01T12:00:02Z  admin   -          create  images            201            -\n",
		},
		{
			name:  "since a duration, limit",
			args:  []string{"audit", "--since", "1h", "--limit", "5"},
			query: "limit=5&since=" + "2025-03-01T12%3A30%3A00Z",
		},
		{
			name:  "namespace",
			args:  []string{"audit", "-n", "team-a"},
			query: "namespace=team-a",
		},
		{
			name:  "since a time",
			args:  []string{"audit", "--since", "2025-03-01T11:00:00.5Z"},
			query: "since=2025-03-01T11%3A00%3A00.5Z",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, s := newAuditCLI(t, list)
			r := c.run(t, tc.args...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, tc.query, s.query)
			if tc.out != "" {
				assert.Equal(t, tc.out, r.stdout)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		c, _ := newAuditCLI(t, list)
		r := c.run(t, "audit", "-o", "json")
		require.Equal(t, 0, r.code, r.stderr)
		var got api.AuditList
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
		assert.Equal(t, list, got)
	})

	t.Run("skipped lines are mentioned", func(t *testing.T) {
		c, _ := newAuditCLI(t, api.AuditList{Skipped: 2})
		r := c.run(t, "audit")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "2 damaged lines")
	})

	t.Run("refused", func(t *testing.T) {
		c, s := newAuditCLI(t, list)
		s.status = http.StatusForbidden
		r := c.run(t, "audit")
		assert.Equal(t, exitRejected, r.code)
		oneErrorLine(t, r, "read the audit log: forbidden: audit:read")
	})

	for _, bad := range [][]string{{"audit", "--since", "yesterday"}, {"audit", "--since", "-1h"}, {"audit", "--limit", "-1"}, {"audit", "extra"}} {
		t.Run("usage "+bad[len(bad)-1], func(t *testing.T) {
			c, s := newAuditCLI(t, list)
			r := c.run(t, bad...)
			assert.Equal(t, exitUsage, r.code)
			assert.Empty(t, s.query, "nothing was asked")
		})
	}
}
