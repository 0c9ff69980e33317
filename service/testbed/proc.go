package testbed

import (
	"os"
	"syscall"
	"time"
)

// Terminate ends a process this program started, by its PID: SIGTERM, then
// SIGKILL when it has not exited after timeout. done must be closed once
// the process has been waited for; Terminate returns only after that. It
// reports whether the process had to be killed. A process that has already
// exited is left alone.
func Terminate(p *os.Process, done <-chan struct{}, timeout time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return false
	case <-time.After(timeout):
	}
	_ = p.Kill()
	<-done
	return true
}
