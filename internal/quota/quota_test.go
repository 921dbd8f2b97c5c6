package quota

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

const mi = int64(1) << 20

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		q    api.Quota
		want Limits
		err  string
	}{
		{name: "none", q: api.Quota{}, want: Limits{}},
		{name: "all", q: api.Quota{Functions: 3, Replicas: 2, Memory: "1Gi", CPU: 1.5, Secrets: 4},
			want: Limits{Functions: 3, Replicas: 2, Memory: 1 << 30, MilliCPU: 1500, Secrets: 4}},
		{name: "a millicore", q: api.Quota{CPU: 0.001}, want: Limits{MilliCPU: 1}},
		{name: "negative replicas", q: api.Quota{Replicas: -1}, err: "quota.replicas"},
		{name: "huge functions", q: api.Quota{Functions: api.MaxQuotaCount + 1}, err: "quota.functions"},
		{name: "negative secrets", q: api.Quota{Secrets: -5}, err: "quota.secrets"},
		{name: "bad memory", q: api.Quota{Memory: "lots"}, err: "quota.memory"},
		{name: "negative memory", q: api.Quota{Memory: "-1Gi"}, err: "quota.memory"},
		{name: "memory past the bound", q: api.Quota{Memory: "99999999999Gi"}, err: "quota.memory"},
		{name: "negative cpu", q: api.Quota{CPU: -1}, err: "quota.cpu"},
		{name: "cpu below a millicore", q: api.Quota{CPU: 0.0001}, err: "quota.cpu"},
		{name: "cpu past the bound", q: api.Quota{CPU: 1e300}, err: "quota.cpu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.q)
			if tt.err != "" {
				require.Error(t, err)
				assert.True(t, api.IsValidation(err))
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestAdmit(t *testing.T) {
	limits := Limits{Functions: 2, Replicas: 2, Memory: 512 * mi, MilliCPU: 2000, Secrets: 1}
	tests := []struct {
		name         string
		l            Limits
		used, change Usage
		err          string
	}{
		{name: "no caps", l: Limits{}, used: Usage{Replicas: 100}, change: Usage{Replicas: 100}},
		{name: "fits exactly", l: limits, used: Usage{Replicas: 1, Memory: 256 * mi, MilliCPU: 1000}, change: Usage{Replicas: 1, Memory: 256 * mi, MilliCPU: 1000}},
		{name: "replicas", l: limits, used: Usage{Replicas: 2}, change: Usage{Replicas: 1},
			err: "namespace team-a: replicas 2 of 2 used, deploy wants 1 more"},
		{name: "functions first", l: limits, used: Usage{Functions: 2, Replicas: 2}, change: Usage{Functions: 1, Replicas: 1},
			err: "namespace team-a: functions 2 of 2 used, deploy wants 1 more"},
		{name: "memory", l: limits, used: Usage{Memory: 256 * mi}, change: Usage{Memory: 512 * mi},
			err: "namespace team-a: memory 256Mi of 512Mi used, deploy wants 512Mi more"},
		{name: "cpu", l: limits, used: Usage{MilliCPU: 1500}, change: Usage{MilliCPU: 1000},
			err: "namespace team-a: cpu 1.5 of 2 used, deploy wants 1 more"},
		{name: "secrets", l: limits, used: Usage{Secrets: 1}, change: Usage{Secrets: 1},
			err: "namespace team-a: secrets 1 of 1 used, deploy wants 1 more"},
		{name: "already over, not growing", l: limits, used: Usage{Replicas: 5}, change: Usage{Replicas: 0, Functions: 1}},
		{name: "already over, shrinking", l: limits, used: Usage{Replicas: 5}, change: Usage{Replicas: -2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Admit("team-a", "deploy", tt.l, tt.used, tt.change)
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			var ex *ExceededError
			require.ErrorAs(t, err, &ex)
			assert.Equal(t, tt.err, err.Error())
		})
	}
}

func TestPerReplica(t *testing.T) {
	spec := api.FunctionSpec{Image: "x"}.WithDefaults()
	assert.Equal(t, Usage{Replicas: 1, Memory: 256 * mi, MilliCPU: 1000}, PerReplica(spec))
	spec.Resources.CPU, spec.Resources.Memory = 0.25, "1Gi"
	assert.Equal(t, Usage{Replicas: 3, Memory: 3 << 30, MilliCPU: 750}, PerReplica(spec).Times(3))
}

func TestFormat(t *testing.T) {
	assert.Equal(t, "1Gi", Format(ResourceMemory, 1<<30))
	assert.Equal(t, "768Mi", Format(ResourceMemory, 768*mi))
	assert.Equal(t, "1000", Format(ResourceMemory, 1000))
	assert.Equal(t, "0", Format(ResourceMemory, 0))
	assert.Equal(t, "0.25", Format(ResourceCPU, 250))
	assert.Equal(t, "7", Format(ResourceReplicas, 7))
}
