// Package defaults fills in the fields of an Options struct that its
// caller left unset: a count, size or duration that is zero or negative,
// a nil logger, a nil clock. Every package that takes Options uses it the
// same way, so that "unset" means the same everywhere.
//
// It is a leaf: it knows no diskd type. It is not a validator: a value a
// user gave out of range is refused where it is parsed, with a message
// naming it, before it reaches an Options struct.
package defaults

import (
	"log/slog"
	"time"
)

// Number is a count, size or duration.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive returns v when it is above zero, else def.
func Positive[T Number](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Logger returns l, or a logger that discards every record when l is nil.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Clock returns now, or time.Now when now is nil.
func Clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
