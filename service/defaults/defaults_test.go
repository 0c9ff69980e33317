package defaults

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct {
		name      string
		v, def, w time.Duration
	}{
		{"zero takes the default", 0, time.Second, time.Second},
		{"negative takes the default", -time.Minute, time.Second, time.Second},
		{"positive is kept", time.Millisecond, time.Second, time.Millisecond},
	} {
		if got := Positive(c.v, c.def); got != c.w {
			t.Errorf("%s: Positive(%v, %v) = %v, want %v", c.name, c.v, c.def, got, c.w)
		}
	}
	if got := Positive(3, 7); got != 3 {
		t.Errorf("Positive(3, 7) = %d, want 3", got)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	own := slog.New(slog.NewTextHandler(&buf, nil))
	if Logger(own) != own {
		t.Error("Logger replaced a logger that was set")
	}
	l := Logger(nil)
	if l == nil {
		t.Fatal("Logger(nil) = nil")
	}
	if l.Enabled(t.Context(), slog.LevelError) {
		t.Error("Logger(nil) keeps error records; want a logger that discards them")
	}
}

func TestClock(t *testing.T) {
	fixed := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if got := Clock(func() time.Time { return fixed })(); !got.Equal(fixed) {
		t.Errorf("Clock kept a clock that returns %v, want %v", got, fixed)
	}
	before := time.Now()
	got := Clock(nil)()
	if got.Before(before) || time.Since(got) > time.Minute {
		t.Errorf("Clock(nil)() = %v, want about %v (time.Now)", got, before)
	}
}
