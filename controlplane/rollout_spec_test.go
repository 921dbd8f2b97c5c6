package controlplane

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// A spec's rollout policy is stored defaulted and comes back as it was
// stored; a bad policy is refused with 400 naming its field. No rollout
// runs yet: the policy is only carried.
func TestRolloutPolicyRoundTrips(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var put api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello",
		`{"image":"hello:latest","rollout":{"steps":[10,50],"interval":"2s","maxErrorRate":0,"promql":[{"query":"sum(up)","max":3}]}}`, &put))
	require.NotNil(t, put.Spec.Rollout)
	p := *put.Spec.Rollout
	assert.Equal(t, []int{10, 50}, p.Steps)
	assert.Equal(t, 2*time.Second, p.Interval.Duration)
	assert.Equal(t, api.DefaultRolloutStepDuration, p.StepDuration.Duration)
	require.NotNil(t, p.MaxErrorRate)
	assert.Equal(t, 0.0, *p.MaxErrorRate)
	assert.Equal(t, []api.PromCheck{{Query: "sum(up)", Max: 3}}, p.PromQL)

	var got api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &got))
	assert.Equal(t, put.Spec, got.Spec)

	// The policy says how the next revision earns its traffic; it is no
	// part of what a revision runs, so changing it alone makes none.
	var again api.Function
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","rollout":{"steps":[20,100]}}`, &again))
	assert.Equal(t, "hello-00001", again.LatestRevision, "no revision for a policy change")
	assert.Equal(t, []int{20, 100}, again.Spec.Rollout.Steps)

	var e api.ErrorBody
	assert.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/functions/hello",
		`{"image":"hello:latest","rollout":{"steps":[50,10]}}`, &e))
	assert.Equal(t, api.CodeInvalid, e.Error.Code)
	assert.Contains(t, e.Error.Message, "rollout.steps[1]")
}
