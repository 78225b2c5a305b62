//go:build race

package verify

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
