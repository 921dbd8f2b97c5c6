package controlplane

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// A spec may name the revision it makes, as Knative's
// spec.template.metadata.name does; traffic may then use that name, and
// the split is kept under ebb's names.
func TestRevisionNames(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","revisionName":"hello-one"}`, &fn))
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello",
		`{"image":"hello:latest","env":{"V":"2"},"revisionName":"hello-two"}`, &fn))
	assert.Equal(t, "hello-00002", fn.LatestRevision)

	body := `{"traffic":[{"revision":"hello-one","percent":0,"tag":"rev1"},{"revision":"hello-two","percent":100}]}`
	fn = api.Function{} // decoding into the old value would keep its fields
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", body, &fn))
	assert.Equal(t, []api.TrafficTarget{
		{Revision: "hello-00001", Percent: 0, Tag: "rev1", URL: "http://rev1-hello.localhost:8080/"},
		{Revision: "hello-00002", Percent: 100},
	}, fn.Traffic, "stored under ebb's names")

	// The same split by either name is no change.
	res, err := a.srv.applyFunction(t.Context(), "hello", FunctionWrite{Traffic: []api.TrafficTarget{
		{Revision: "hello-00001", Tag: "rev1"}, {Revision: "hello-two", Percent: 100}}})
	require.NoError(t, err)
	assert.Equal(t, ActionUnchanged, res.Action)

	// Going back to the spec a name was given: that revision again, none made.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","revisionName":"hello-one"}`, &fn))
	assert.Equal(t, "hello-00002", fn.LatestRevision, "no revision made")
	require.Len(t, fn.Revisions, 2)

	for _, tc := range []struct {
		name, body string
	}{
		{"a name is its revision's for good", `{"image":"hello:latest","env":{"V":"3"},"revisionName":"hello-one"}`},
		{"another function's prefix", `{"image":"hello:latest","revisionName":"other-one"}`},
		{"the form of ebb's names", `{"image":"hello:latest","revisionName":"hello-00009"}`},
		{"not a DNS label", `{"image":"hello:latest","revisionName":"hello_One"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e api.ErrorBody
			assert.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/functions/hello", tc.body, &e))
			assert.Equal(t, api.CodeInvalid, e.Error.Code)
			assert.Contains(t, e.Error.Message, "revisionName")
		})
	}
	// Traffic naming no revision either way is refused.
	var e api.ErrorBody
	assert.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-three","percent":100}]}`, &e))
}
