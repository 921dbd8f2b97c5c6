package nodeagent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestRemoteSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeUnauthorized, Message: "missing or wrong bearer token"}})
		case r.URL.Path == "/internal/v1/secrets/team-a/db":
			_ = json.NewEncoder(w).Encode(api.SecretData{Data: map[string][]byte{"pw": []byte("hunter2\x00bin")}})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: `secret "x" does not exist`}})
		}
	}))
	defer srv.Close()
	r := &RemoteSecrets{BaseURL: srv.URL + "/", Token: "tok", Client: srv.Client()}
	got, err := r.SecretValues(context.Background(), "team-a", "db")
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"pw": []byte("hunter2\x00bin")}, got)
	_, err = r.SecretValues(context.Background(), "team-a", "x")
	assert.ErrorContains(t, err, `secret "x" does not exist`)
	r.Token = "bad"
	_, err = r.SecretValues(context.Background(), "team-a", "db")
	assert.ErrorContains(t, err, "wrong bearer token")
}
