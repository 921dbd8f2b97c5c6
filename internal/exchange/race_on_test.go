//go:build race

package exchange

// raceEnabled skips allocation counts under the race detector, whose
// sync.Pool drops items at random.
const raceEnabled = true
