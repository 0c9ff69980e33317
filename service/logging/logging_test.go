package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, c := range []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"debug", slog.LevelDebug, true},
		{"info", slog.LevelInfo, true},
		{"warning", slog.LevelWarn, true},
		{"WARN", slog.LevelWarn, true},
		{"error", slog.LevelError, true},
		{"", 0, false},
		{"verbose", 0, false},
		{"6", 0, false},
	} {
		got, err := ParseLevel(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseLevel(%q) = %v, %v", c.in, got, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "debug, info, warning, error") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("ParseLevel(%q): error %q does not list the levels in one line", c.in, err)
		}
	}
	for _, n := range Levels {
		l, err := ParseLevel(n)
		if err != nil || LevelName(l) != n {
			t.Errorf("level %q does not round-trip: %v %v", n, LevelName(l), err)
		}
	}
}

// TestJournalLines: under the journal every line carries its syslog
// priority and no time; records below the level are left out.
func TestJournalLines(t *testing.T) {
	for _, c := range []struct {
		level slog.Level
		want  []string
	}{
		{slog.LevelDebug, []string{
			`<7>level=DEBUG msg=d`, `<6>level=INFO msg=i`, `<4>level=WARN msg=w`, `<3>level=ERROR msg=e`,
			`<4>level=WARN msg=attrs host=alpha`, `<6>level=INFO msg=group g.k=v`,
		}},
		{slog.LevelWarn, []string{`<4>level=WARN msg=w`, `<3>level=ERROR msg=e`, `<4>level=WARN msg=attrs host=alpha`}},
	} {
		t.Run(LevelName(c.level), func(t *testing.T) {
			var b bytes.Buffer
			log := NewWriter(&b, c.level, true)
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			log.With("host", "alpha").Warn("attrs")
			log.WithGroup("g").Info("group", "k", "v")
			got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// TestPlainLines: elsewhere the lines are slog's own, with the time.
func TestPlainLines(t *testing.T) {
	var b bytes.Buffer
	log := NewWriter(&b, slog.LevelInfo, false)
	log.Debug("hidden")
	log.Warn("careful", "n", 1)
	line := b.String()
	if !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, " level=WARN msg=careful n=1\n") ||
		strings.Count(line, "\n") != 1 {
		t.Errorf("got %q", line)
	}
}

// TestJournalConcurrent: records logged at once from many goroutines (and
// through derived loggers) each keep their own priority.
func TestJournalConcurrent(t *testing.T) {
	var b bytes.Buffer
	log := NewWriter(&b, slog.LevelDebug, true)
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("g", g)
			for i := range 200 {
				lv := levels[(g+i)%len(levels)]
				l.Log(t.Context(), lv, "m", "lv", lv.String())
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		for _, lv := range levels {
			if strings.HasSuffix(l, " lv="+lv.String()) && !strings.HasPrefix(l, fmt.Sprintf("<%d>", Priority(lv))) {
				t.Fatalf("line %q has the wrong priority", l)
			}
		}
	}
}

// TestIsJournal: JOURNAL_STREAM must name the very file (device and inode).
func TestIsJournal(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open("a"), open("b")
	var st syscall.Stat_t
	if err := syscall.Fstat(int(a.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	for _, c := range []struct {
		f      *os.File
		stream string
		want   bool
	}{
		{a, stream, true},
		{b, stream, false}, // stderr was redirected elsewhere
		{a, "", false},
		{a, fmt.Sprintf("%d", st.Ino), false},
		{a, "x:y", false},
		{a, fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
	} {
		if got := IsJournal(c.f, c.stream); got != c.want {
			t.Errorf("IsJournal(%s, %q) = %v, want %v", c.f.Name(), c.stream, got, c.want)
		}
	}
}
