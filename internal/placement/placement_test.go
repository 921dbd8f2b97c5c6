package placement

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const gi = int64(1 << 30)

func TestFits(t *testing.T) {
	cfg := Config{}.WithDefaults()
	node := Candidate{CPU: 2, Memory: 4 * gi}
	one := Request{CPU: 1, Memory: 256 << 20}
	for _, tc := range []struct {
		name string
		c    Candidate
		r    Request
		want bool
	}{
		{"empty node", node, one, true},
		{"CPU is overcommitted sixteen times", Candidate{CPU: 2, Memory: 4 * gi, AllocCPU: 31}, one, true},
		{"but no further", Candidate{CPU: 2, Memory: 4 * gi, AllocCPU: 31.5}, one, false},
		{"memory is not overcommitted", Candidate{CPU: 2, Memory: 4 * gi, AllocMemory: 4*gi - gi/8}, one, false},
		{"memory to the byte", Candidate{CPU: 2, Memory: 4 * gi, AllocMemory: 4*gi - 256<<20}, one, true},
		{"a node that reports no capacity takes nothing", Candidate{}, one, false},
		{"a zero request fits a full node", Candidate{CPU: 1, Memory: gi, AllocCPU: 16, AllocMemory: gi}, Request{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Fits(cfg, tc.c, tc.r))
		})
	}
}

func TestScore(t *testing.T) {
	cfg := Config{}.WithDefaults()
	r := Request{CPU: 1, Memory: gi}
	for _, tc := range []struct {
		name string
		c    Candidate
		want float64
	}{
		// 32 schedulable cores, 4Gi: after placing, 31/32 and 3/4 free.
		{"balance only", Candidate{CPU: 2, Memory: 4 * gi}, 100 * (31.0/32 + 0.75) / 2},
		{"the image", Candidate{CPU: 2, Memory: 4 * gi, HasImage: true}, 200 + 100*(31.0/32+0.75)/2},
		{"a pre-created task", Candidate{CPU: 2, Memory: 4 * gi, PreCreated: true}, 100 + 100*(31.0/32+0.75)/2},
		{"over capacity scores no balance", Candidate{CPU: 1, Memory: gi, AllocCPU: 20, AllocMemory: 2 * gi}, 0},
		{"unknown capacity scores no balance", Candidate{HasImage: true}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, Score(cfg, tc.c, r), 1e-9)
		})
	}
	// Weights weigh.
	heavy := Config{ImageLocalityWeight: 10, BalanceWeight: 0.5}.WithDefaults()
	assert.InDelta(t, 1000+50*(31.0/32+0.75)/2, Score(heavy, Candidate{CPU: 2, Memory: 4 * gi, HasImage: true}, r), 1e-9)
}

func TestWithDefaults(t *testing.T) {
	assert.Equal(t, Config{ImageLocalityWeight: 2, PreCreatedWeight: 1, BalanceWeight: 1, CPUOvercommit: 16}, Config{}.WithDefaults())
	assert.Equal(t, Config{ImageLocalityWeight: 3, PreCreatedWeight: 1, BalanceWeight: 1, CPUOvercommit: 4}, Config{ImageLocalityWeight: 3, CPUOvercommit: 4}.WithDefaults())
}
