package testenv

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/ociimage"
)

// StartRegistry gives a registry that takes pushes, with or without basic
// auth, and logs every request it served.
func TestStartRegistry(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "img.oci.tar")
	f, err := os.Create(archive)
	require.NoError(t, err)
	_, err = ociimage.Build(f, ociimage.BuildOptions{Name: "team/hello:v1", Binary: []byte("#!/bin/sh\necho hi\n")})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	c := &http.Client{Timeout: 5 * time.Second}
	manifest := func(r *RegistryServer, user, pass string) int {
		req, err := http.NewRequest("GET", "http://"+r.Addr+"/v2/team/hello/manifests/v1", nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name string
		opts RegistryOptions
	}{
		{"anonymous", RegistryOptions{}},
		{"basic auth", RegistryOptions{User: "team", Password: "hunter2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := StartRegistry(t, tt.opts)
			r.Push(t, archive, r.Addr+"/team/hello:v1")
			assert.Equal(t, http.StatusOK, manifest(r, tt.opts.User, tt.opts.Password))
			if tt.opts.User != "" {
				assert.Equal(t, http.StatusUnauthorized, manifest(r, "", ""))
				assert.Equal(t, http.StatusUnauthorized, manifest(r, tt.opts.User, "wrong"))
			}
			assert.Equal(t, 1, r.Requests("GET", "/v2/team/hello/manifests/v1"), "the access log counts the GET, not the refusals:\n%s", r.Log())
		})
	}
}
