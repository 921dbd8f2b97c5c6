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

// TestStatusShowsVIP checks that the VIP a node allocated (vips/{fn})
// appears in both the single status and the listing, and only for its
// function.
func TestStatusShowsVIP(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/other", `{"image":"hello:latest"}`, nil))
	_, err := a.store.Txn(context.Background(),
		store.PutJSON(store.VIPKey("hello"), store.VIP{Function: "hello", Index: 0, Addr: "127.77.0.1:80"}, store.MustNotExist),
		store.Put(store.VIPSlotKey(0), []byte(`"hello"`), store.MustNotExist))
	require.NoError(t, err)

	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Equal(t, "127.77.0.1:80", fn.VIP)
	var other api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/other", "", &other))
	assert.Empty(t, other.VIP, "no VIP allocated yet")

	var list api.FunctionList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions", "", &list))
	got := map[string]string{}
	for _, f := range list.Functions {
		got[f.Name] = f.VIP
	}
	assert.Equal(t, map[string]string{"hello": "127.77.0.1:80", "other": ""}, got)
}
