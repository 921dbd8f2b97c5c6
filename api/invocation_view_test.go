package api

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestInvocationViews(t *testing.T) {
	inv := Invocation{ID: "i", Function: "hello.team-a",
		Request: InvocationRequest{Method: "POST", Path: "/", Body: []byte("in")},
		Result:  &InvocationResult{Status: 200, Body: []byte("out"), Truncated: true}}

	pub := inv.Public()
	assert.Equal(t, "hello", pub.Function)
	assert.Equal(t, "team-a", pub.Namespace)
	assert.Equal(t, "in", string(pub.Request.Body))

	brief := inv.Brief()
	assert.Equal(t, "hello", brief.Function)
	assert.Nil(t, brief.Request.Body)
	assert.Nil(t, brief.Result.Body)
	assert.Equal(t, 200, brief.Result.Status)
	assert.True(t, brief.Result.Truncated)
	assert.Equal(t, "out", string(inv.Result.Body), "the original keeps its result")

	def := Invocation{Function: "hello"}.Public()
	assert.Equal(t, "default", def.Namespace)
	assert.Equal(t, Invocation{Function: "x", Namespace: "ns"}, Invocation{Function: "x", Namespace: "ns"}.Public(), "already public")
	assert.Equal(t, Invocation{Function: "x", Namespace: "ns"}, Invocation{Function: "x.ns", Namespace: "ns"}.Public(), "stored with both, as cron does")
	assert.Equal(t, pub, pub.Public(), "idempotent")
}
