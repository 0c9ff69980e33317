//go:build race

package testbed

// raceEnabled: this binary was built with -race, so BuildDiskd builds the
// daemon with -race too.
const raceEnabled = true
