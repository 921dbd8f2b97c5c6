package quota

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClip(t *testing.T) {
	one := Usage{Replicas: 1, Memory: 256 * mi, MilliCPU: 1000}
	big := Usage{Replicas: 1, Memory: 1024 * mi, MilliCPU: 1000}
	tests := []struct {
		name string
		l    Limits
		// reserved is what job pods hold in the namespace.
		reserved Usage
		wants    []Want
		grants   []Grant
		over     []string
	}{
		{
			name:   "no caps: everyone gets what it wants",
			l:      Limits{Functions: 1},
			wants:  []Want{{Name: "a-1", Desired: 50, Each: one}},
			grants: []Grant{{Share: 50, Granted: 50}},
		},
		{
			name:   "under the cap",
			l:      Limits{Replicas: 5},
			wants:  []Want{{Name: "a-1", Desired: 2, Held: 2, Each: one}, {Name: "b-1", Desired: 3, Held: 1, Each: one}},
			grants: []Grant{{Share: 2, Granted: 2}, {Share: 3, Granted: 3}},
		},
		{
			name:   "one revision wanting 5 of 2",
			l:      Limits{Replicas: 2},
			wants:  []Want{{Name: "a-1", Desired: 5, Held: 2, Each: one}},
			grants: []Grant{{Share: 2, Granted: 2, Reason: "clipped by namespace quota: replicas 2 of 2"}},
		},
		{
			name: "the small demand is met, the rest split evenly",
			l:    Limits{Replicas: 9},
			wants: []Want{
				{Name: "c-1", Desired: 10, Held: 0, Each: one},
				{Name: "a-1", Desired: 1, Held: 0, Each: one},
				{Name: "b-1", Desired: 10, Held: 0, Each: one},
			},
			grants: []Grant{
				{Share: 4, Granted: 4, Reason: "clipped by namespace quota: replicas 9 of 9"},
				{Share: 1, Granted: 1},
				{Share: 4, Granted: 4, Reason: "clipped by namespace quota: replicas 9 of 9"},
			},
		},
		{
			name: "an odd replica goes by name",
			l:    Limits{Replicas: 3},
			wants: []Want{
				{Name: "b-1", Desired: 4, Each: one},
				{Name: "a-1", Desired: 4, Each: one},
			},
			grants: []Grant{
				{Share: 1, Granted: 1, Reason: "clipped by namespace quota: replicas 3 of 3"},
				{Share: 2, Granted: 2, Reason: "clipped by namespace quota: replicas 3 of 3"},
			},
		},
		{
			name: "a newcomer waits for the holder to come down to its share",
			l:    Limits{Replicas: 2},
			wants: []Want{
				{Name: "a-1", Desired: 5, Held: 2, Each: one},
				{Name: "b-1", Desired: 1, Held: 0, Each: one},
			},
			grants: []Grant{
				{Share: 1, Granted: 1, Reason: "clipped by namespace quota: replicas 2 of 2"},
				{Share: 1, Granted: 0, Reason: "clipped by namespace quota: replicas 2 of 2 (the namespace's other revisions scale down first)"},
			},
			over: []string{"a-1"},
		},
		{
			name: "a lowered cap: within its share a revision keeps what it holds",
			l:    Limits{Replicas: 2},
			wants: []Want{
				{Name: "a-1", Desired: 1, Held: 1, Each: one},
				{Name: "b-1", Desired: 4, Held: 4, Each: one},
			},
			grants: []Grant{
				{Share: 1, Granted: 1},
				{Share: 1, Granted: 1, Reason: "clipped by namespace quota: replicas 2 of 2"},
			},
			over: []string{"b-1"},
		},
		{
			name: "memory: the big revision stops, the small one goes on",
			l:    Limits{Memory: 1536 * mi},
			wants: []Want{
				{Name: "a-1", Desired: 3, Each: big},
				{Name: "b-1", Desired: 3, Each: one},
			},
			grants: []Grant{
				{Share: 1, Granted: 1, Reason: "clipped by namespace quota: memory 1536Mi of 1536Mi"},
				{Share: 2, Granted: 2, Reason: "clipped by namespace quota: memory 1536Mi of 1536Mi"},
			},
		},
		{
			name:   "cpu",
			l:      Limits{MilliCPU: 2500},
			wants:  []Want{{Name: "a-1", Desired: 4, Each: one}},
			grants: []Grant{{Share: 2, Granted: 2, Reason: "clipped by namespace quota: cpu 2 of 2.5"}},
		},
		{
			name:   "a replica bigger than the whole quota never fits",
			l:      Limits{Memory: 512 * mi},
			wants:  []Want{{Name: "a-1", Desired: 1, Each: big}},
			grants: []Grant{{Share: 0, Granted: 0, Reason: "clipped by namespace quota: memory 0 of 512Mi"}},
		},
		{
			name:     "job pods hold their share first",
			l:        Limits{Replicas: 4},
			reserved: one.Times(3),
			wants:    []Want{{Name: "a-1", Desired: 3, Held: 1, Each: one}},
			grants:   []Grant{{Share: 1, Granted: 1, Reason: "clipped by namespace quota: replicas 4 of 4"}},
		},
		{
			name:     "job pods past the quota leave nothing, and held replicas keep none of it",
			l:        Limits{Memory: 1024 * mi},
			reserved: Usage{Replicas: 2, Memory: 1024 * mi},
			wants:    []Want{{Name: "a-1", Desired: 2, Held: 2, Each: one}},
			grants:   []Grant{{Share: 0, Granted: 0, Reason: "clipped by namespace quota: memory 1Gi of 1Gi"}},
			over:     []string{"a-1"},
		},
		{
			name:   "nothing wanted",
			l:      Limits{Replicas: 2},
			wants:  []Want{{Name: "a-1", Desired: 0, Held: 0, Each: one}},
			grants: []Grant{{}},
		},
		{
			name:   "huge demands are handed out in bulk",
			l:      Limits{Replicas: 1_000_000},
			wants:  []Want{{Name: "a-1", Desired: 2_000_000, Each: one}, {Name: "b-1", Desired: 10, Each: one}},
			grants: []Grant{{Share: 999_990, Granted: 999_990, Reason: "clipped by namespace quota: replicas 1000000 of 1000000"}, {Share: 10, Granted: 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grants := Clip(tt.l, tt.reserved, tt.wants)
			assert.Equal(t, tt.grants, grants)
			assert.Equal(t, tt.over, Over(tt.wants, grants))
			// Shares never exceed a cap, and a second run gives the same.
			total := tt.reserved
			for i, g := range grants {
				total = total.Plus(tt.wants[i].Each.Times(g.Share))
			}
			if tt.l.Replicas > 0 {
				assert.LessOrEqual(t, total.Replicas, max(tt.l.Replicas, tt.reserved.Replicas))
			}
			if tt.l.Memory > 0 {
				assert.LessOrEqual(t, total.Memory, max(tt.l.Memory, tt.reserved.Memory))
			}
			assert.Equal(t, grants, Clip(tt.l, tt.reserved, tt.wants), "deterministic")
		})
	}
}
