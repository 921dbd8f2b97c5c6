package api_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// The control plane serves store.Node and the client decodes api.Node, so
// the two must carry the same JSON fields with the same Go types.
func TestNodeMatchesStoreNode(t *testing.T) {
	fields := func(v any) map[string]string {
		out := map[string]string{}
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			out[f.Tag.Get("json")] = f.Type.String()
		}
		return out
	}
	assert.Equal(t, fields(store.Node{}), fields(api.Node{}))
}
