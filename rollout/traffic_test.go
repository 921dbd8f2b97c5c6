package rollout

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
)

func TestStableOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		traffic []api.TrafficTarget
		want    string
	}{
		{"follows latest", []api.TrafficTarget{{LatestRevision: true, Percent: 100}}, "f-00001"},
		{"pinned", []api.TrafficTarget{{Revision: "f-00003", Percent: 100}}, "f-00003"},
		{"pinned with a tag and a match beside", []api.TrafficTarget{
			{Revision: "f-00003", Percent: 100},
			{Revision: "f-00002", Tag: "old"},
			{Revision: "f-00001", Headers: map[string]string{"user": "tester"}},
		}, "f-00003"},
		{"split", []api.TrafficTarget{{Revision: "f-00001", Percent: 50}, {Revision: "f-00002", Percent: 50}}, ""},
		{"nothing", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, StableOf(tc.traffic, "f-00001"))
		})
	}
	assert.Empty(t, StableOf([]api.TrafficTarget{{LatestRevision: true, Percent: 100}}, ""), "a function's first revision has nothing to roll from")
}

func TestTraffic(t *testing.T) {
	current := []api.TrafficTarget{
		{Revision: "f-00001", Percent: 100, Tag: "v1"},
		{Revision: "f-00002", Tag: "canary"},
		{Revision: "f-00001", Headers: map[string]string{"user": "tester"}},
	}
	kept := []api.TrafficTarget{
		{Revision: "f-00001", Tag: "v1"},
		{Revision: "f-00002", Tag: "canary"},
		{Revision: "f-00001", Headers: map[string]string{"user": "tester"}},
	}
	st := State{Stable: "f-00001", Canary: "f-00002"}
	for _, tc := range []struct {
		name    string
		percent int
		latest  string
		want    []api.TrafficTarget
	}{
		{"step", 25, "f-00002", []api.TrafficTarget{{Revision: "f-00001", Percent: 75}, {Revision: "f-00002", Percent: 25}}},
		{"rolled back", 0, "f-00002", []api.TrafficTarget{{Revision: "f-00001", Percent: 100}}},
		{"succeeded, canary latest", 100, "f-00002", []api.TrafficTarget{{LatestRevision: true, Percent: 100}}},
		{"succeeded, a newer revision exists", 100, "f-00003", []api.TrafficTarget{{Revision: "f-00002", Percent: 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.Percent = tc.percent
			got := Traffic(current, st, tc.latest)
			assert.Equal(t, append(tc.want, kept...), got)
			assert.NoError(t, api.ValidateTraffic(got, func(string) bool { return true }))
		})
	}
}
