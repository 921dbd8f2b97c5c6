package controlplane

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// TestTrafficHeaderMatches stores a split's header matches as given, shows
// them back, treats the same split again as unchanged, and refuses a
// hostile one with the API's validation.
func TestTrafficHeaderMatches(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, &fn))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"V":"2"}}`, &fn))

	body := `{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","percent":0,"headers":{"User":"tester","x-env":"beta"}}]}`
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", body, &fn))
	require.Len(t, fn.Traffic, 2)
	assert.Equal(t, map[string]string{"User": "tester", "x-env": "beta"}, fn.Traffic[1].Headers)
	assert.Equal(t, "hello-00002", fn.Traffic[1].Revision)

	rec, _, err := store.GetJSON[store.Function](context.Background(), a.store, store.FunctionKey("hello"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"User": "tester", "x-env": "beta"}, rec.Traffic[1].Headers, "stored as given")

	version := fn.ResourceVersion
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", body, &fn))
	assert.Equal(t, version, fn.ResourceVersion, "the same matches again change nothing")

	other := `{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","percent":0,"headers":{"User":"admin"}}]}`
	var changed api.Function // fresh: decoding into fn would merge its maps
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", other, &changed))
	assert.NotEqual(t, version, changed.ResourceVersion, "another value is a change")
	assert.Equal(t, map[string]string{"User": "admin"}, changed.Traffic[1].Headers)

	for _, bad := range []string{
		`{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","headers":{"User":"a\r\nX: b"}}]}`,
		`{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","headers":{"Bad Name":"a"}}]}`,
		`{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","headers":{}}]}`,
		`{"traffic":[{"revision":"hello-00002","percent":0,"headers":{"User":"a"}}]}`,
	} {
		assert.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/functions/hello/traffic", bad, nil), bad)
	}
}
