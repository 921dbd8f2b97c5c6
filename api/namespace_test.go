package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestQualifiedName(t *testing.T) {
	for _, tc := range []struct {
		ns, fn, want string
	}{
		{"default", "hello", "hello"},
		{"", "hello", "hello"},
		{"team-a", "hello", "hello.team-a"},
	} {
		q := QualifiedName(tc.ns, tc.fn)
		assert.Equal(t, tc.want, q)
		ns, fn := SplitQualifiedName(q)
		wantNS := tc.ns
		if wantNS == "" {
			wantNS = DefaultNamespace
		}
		assert.Equal(t, wantNS, ns, q)
		assert.Equal(t, tc.fn, fn, q)
	}
}

func TestValidateQualified(t *testing.T) {
	for _, tc := range []struct {
		name, ns, fn, wantErr string
	}{
		{"default", "default", "hello", ""},
		{"namespaced", "team-a", "hello", ""},
		{"longest", strings.Repeat("n", 31), strings.Repeat("f", 31), ""},
		{"too long together", strings.Repeat("n", 32), strings.Repeat("f", 31), "at most 62 characters"},
		{"a 63-character name in default", "default", strings.Repeat("f", 63), ""},
		{"bad namespace", "Team_A", "hello", "namespace"},
		{"dot in namespace", "a.b", "hello", "DNS label"},
		{"empty function", "team-a", "", "must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateQualified(tc.ns, tc.fn)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
}
