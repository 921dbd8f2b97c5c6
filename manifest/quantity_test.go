package manifest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{in: "500m", want: 0.5},
		{in: "1", want: 1},
		{in: "2.5", want: 2.5},
		{in: "0.25", want: 0.25},
		{in: ".5", want: 0.5},
		{in: "1m", want: 0.001},
		{in: "250000u", want: 0.25},
		{in: "1e3m", err: "not a Kubernetes quantity"}, // an exponent or a suffix, not both
		{in: "1e-1", want: 0.1},
		{in: "100n", err: "below 1m"},
		{in: "0", err: "below 1m"},
		{in: "-1", err: "must not be negative"},
		{in: "", err: "not a Kubernetes quantity"},
		{in: "1 m", err: "not a Kubernetes quantity"},
		{in: "1.2.3", err: "not a Kubernetes quantity"},
		{in: "abc", err: "not a Kubernetes quantity"},
		{in: "1x", err: "not a Kubernetes quantity"},
		{in: "1e999", err: "exponent out of range"},
		{in: "9999999999E", err: "too large"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCPU(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-12)
		})
	}
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "128Mi", want: 128 << 20},
		{in: "1Gi", want: 1 << 30},
		{in: "1G", want: 1e9},
		{in: "1e3", want: 1000},
		{in: "1E3", want: 1000},
		{in: "129e6", want: 129e6},
		{in: "1.5Gi", want: 3 << 29},
		{in: "64k", want: 64000},
		{in: "64Ki", want: 64 << 10},
		{in: "1M", want: 1e6},
		{in: "2T", want: 2e12},
		{in: "1E", err: "too large"}, // exa, not an exponent
		{in: "1500m", want: 2},       // 1.5 bytes round up
		{in: "0", err: "must be positive"},
		{in: "-128Mi", err: "must not be negative"},
		{in: "128MB", err: "not a Kubernetes quantity"},
		{in: "Mi", err: "not a Kubernetes quantity"},
		{in: "2Pi", err: "too large"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMemory(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{
		128 << 20: "128Mi", 1 << 30: "1Gi", 3 << 29: "1536Mi", 1000: "1000", 64 << 10: "64Ki", 1e9: "1000000000", 1: "1",
	} {
		assert.Equal(t, want, FormatBytes(in))
	}
}
