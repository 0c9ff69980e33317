package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
)

// TestRunClientTerminalIdleReconnect: the daemon closes the connection of a
// client left at its prompt past the idle timeout; the next line
// reconnects without a word, and ^D still ends with 0.
func TestRunClientTerminalIdleReconnect(t *testing.T) {
	ts := controltest.Start(t, &control.Server{IdleTimeout: 300 * time.Millisecond})
	exitFile := filepath.Join(t.TempDir(), "exit")
	tm := startClientTerminal(t, ts.Path, exitFile, t.TempDir())
	tm.waitPrompt("the prompt", 1)
	for i := range 2 {
		time.Sleep(time.Second) // the daemon closes the idle connection meanwhile
		tm.typ("list")
		tm.keys("Enter")
		s := tm.wait("the list", func(s string) bool {
			return strings.Count(s, "beta   /dev/sdd1  xfs   media") == i+1 && tm.atPrompt(s)
		})
		if strings.Contains(s, "lost the connection") {
			t.Fatalf("the client reported a lost connection:\n%s", s)
		}
	}
	time.Sleep(time.Second)
	tm.keys("C-d")
	if code := readExit(t, exitFile); code != "0" {
		t.Errorf("exit status %s, want 0; screen:\n%s", code, tm.screen())
	}
}
