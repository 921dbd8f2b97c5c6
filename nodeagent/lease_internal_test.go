package nodeagent

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKeepLeftover(t *testing.T) {
	tests := []struct {
		name             string
		exists, assigned bool
		keep             bool
	}{
		{"still wanted: adopted", true, true, true},
		{"placed elsewhere while away: stopped", true, false, false},
		{"revision deleted while away: stopped", false, false, false},
		{"revision deleted, assignment not yet cleaned: stopped", false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep, why := keepLeftover(tc.exists, tc.assigned)
			assert.Equal(t, tc.keep, keep)
			assert.Equal(t, tc.keep, why == "", "a stop says why")
		})
	}
}
