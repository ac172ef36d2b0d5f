//go:build race

package activator

// raceEnabled reports that the race detector is on: it changes allocation counts.
const raceEnabled = true
