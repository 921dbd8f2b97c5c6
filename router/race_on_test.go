//go:build race

package router

// raceEnabled shrinks the heaviest tests under the race detector, which
// slows memory copies several times over.
const raceEnabled = true
