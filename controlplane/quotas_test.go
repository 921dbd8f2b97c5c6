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

// TestStatusSaysWhyTheQuotaClipped: the autoscaler's reason in scales/{rev}
// reaches the revision's status message, with its demand.
func TestStatusSaysWhyTheQuotaClipped(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	_, err := a.store.Txn(context.Background(),
		store.PutJSON(store.ScaleKey("hello-00001"), store.Scale{
			Revision: "hello-00001", Desired: 2, Wanted: 5, Clipped: "clipped by namespace quota: replicas 2 of 2",
		}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("hello-00001", "r1"), store.Endpoint{Revision: "hello-00001", Replica: "r1"}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("hello-00001", "r2"), store.Endpoint{Revision: "hello-00001", Replica: "r2"}, store.AnyVersion),
	)
	require.NoError(t, err)
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	rev := fn.Revisions[0]
	assert.Equal(t, api.RevisionReady, rev.State, "it runs what it may")
	assert.Equal(t, "clipped by namespace quota: replicas 2 of 2; demand 5 replicas, runs 2", rev.Message)

	// Beside a node's message, both are said.
	_, err = a.store.Txn(context.Background(),
		store.PutJSON(store.RevStatusKey("hello-00001", "n1"), store.RevisionNodeStatus{
			Revision: "hello-00001", Node: "n1", State: api.RevisionCrashLoop, Ready: 1, Message: "exited with 2",
		}, store.AnyVersion))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Equal(t, "exited with 2; clipped by namespace quota: replicas 2 of 2; demand 5 replicas, runs 2", fn.Revisions[0].Message)
}
