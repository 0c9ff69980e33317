package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// progress keeps one status line on stderr while the benchmark runs: the
// elapsed time and what each track (the phases that run side by side) is
// doing. On a terminal the line is redrawn in place; otherwise a line is
// printed when it changes, at most every 10 seconds.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu      sync.Mutex
	order   []string
	status  map[string]string
	drawn   int // runes of the line on screen (tty)
	printed string
	at      time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now(), status: map[string]string{}}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// set sets a track's status; "" removes the track from the line.
func (p *progress) set(track, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.status[track]; !ok {
		p.order = append(p.order, track)
	}
	p.status[track] = fmt.Sprintf(format, a...)
}

func (p *progress) line() string {
	parts := []string{fmt.Sprintf("[%3.0fs]", time.Since(p.start).Seconds())}
	for _, t := range p.order {
		if s := p.status[t]; s != "" {
			parts = append(parts, t+": "+s)
		}
	}
	return strings.Join(parts, " | ")
}

// run redraws the line until ctx ends, then clears it.
func (p *progress) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.clear()
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.line()
	if p.tty {
		if limit := 160; utf8.RuneCountInString(l) > limit {
			l = string([]rune(l)[:limit-1]) + "…"
		}
		n := utf8.RuneCountInString(l)
		fmt.Fprintf(p.w, "\r%s%s", l, strings.Repeat(" ", max(p.drawn-n, 0)))
		p.drawn = n
		return
	}
	body := l[strings.IndexByte(l, ']')+1:]
	if body != p.printed && time.Since(p.at) >= 10*time.Second {
		fmt.Fprintln(p.w, l)
		p.printed, p.at = body, time.Now()
	}
}

func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

func (p *progress) clearLocked() {
	if p.tty && p.drawn > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.drawn))
		p.drawn = 0
	}
}

// logf prints a line of its own (a warning, a phase's result), above the
// status line.
func (p *progress) logf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, "diskd-bench: "+format+"\n", a...)
}
