package harness

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseHeyCSV(t *testing.T) {
	b, err := os.ReadFile("testdata/hey.csv")
	require.NoError(t, err)
	rows, err := ParseHeyCSV(string(b))
	require.NoError(t, err)
	require.Len(t, rows, 5)
	assert.Equal(t, HeyAnswer{Status: 200, Sent: 2800 * time.Microsecond, Took: 14600 * time.Microsecond}, rows[0])
	assert.Equal(t, 500, rows[4].Status)
	assert.Equal(t, 6250*time.Millisecond, rows[4].Sent)

	_, err = ParseHeyCSV("Summary:\n  Total: 1 secs\n")
	assert.ErrorContains(t, err, "-o csv")
	_, err = ParseHeyCSV("response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset\n0.1,0,0,0,0,0,five,1\n")
	assert.ErrorContains(t, err, "five")
}

// TestRollbackAttribute checks that each 5xx counts for the run whose
// step it was sent in, timed from that step's start.
func TestRollbackAttribute(t *testing.T) {
	b, err := os.ReadFile("testdata/hey.csv")
	require.NoError(t, err)
	rows, err := ParseHeyCSV(string(b))
	require.NoError(t, err)
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := &RollbackResult{Runs: []RollbackRun{{StepStart: start.Add(time.Second)}, {StepStart: start.Add(5 * time.Second)}}}
	r.attribute(rows, start)
	assert.Equal(t, 2, r.Runs[0].Client5xx)
	assert.InDelta(t, 517.4, r.Runs[0].First5xxMs, 0.01)
	assert.InDelta(t, 2005.7, r.Runs[0].Last5xxMs, 0.01)
	assert.Equal(t, 1, r.Runs[1].Client5xx)
	assert.InDelta(t, 1250, r.Runs[1].First5xxMs, 0.01)
	assert.InDelta(t, 1250, r.Runs[1].Last5xxMs, 0.01)
	assert.Equal(t, 1, r.Non5xxErrors, "the 404")
}
