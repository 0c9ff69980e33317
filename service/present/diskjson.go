package present

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// DisksJSON is the --json form of a disk list: one line holding an array
// (never null) of disk objects with diskstate.Disk's keys, mountpoints
// always an array.
//
// The bytes are exactly those of encoding/json (an Encoder with
// SetEscapeHTML(false)) given the disks with nil mount points made empty;
// the tests hold it to that. It writes them itself because at scale the
// reflection was most of `list --json` of 16,000 disks in a profile,
// and it hands every string that needs escaping to encoding/json, so that
// the escaping stays the library's.
func DisksJSON(disks []diskstate.Disk) ([]byte, error) {
	w := diskJSONWriter{b: make([]byte, 0, 3+len(disks)*diskJSONEstimate)}
	w.b = append(w.b, '[')
	for i := range disks {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		if err := w.disk(&disks[i]); err != nil {
			return nil, fmt.Errorf("encode JSON: %w", err)
		}
	}
	w.b = append(w.b, "]\n"...)
	return w.b, nil
}

// diskJSONEstimate is about the size of one disk object, to size the
// buffer once.
const diskJSONEstimate = 320

type diskJSONWriter struct {
	b       []byte
	scratch bytes.Buffer
	enc     *json.Encoder // on scratch; made for the first string that needs it
}

// disk writes one disk object: every field of diskstate's table, in table
// order (the order of Disk's fields, and so of encoding/json's keys).
func (w *diskJSONWriter) disk(d *diskstate.Disk) error {
	w.b = append(w.b, '{')
	first := true
	for i := range diskstate.NumFields() {
		f := diskstate.FieldAt(i)
		if f.OmitZero && f.Empty(d) {
			continue
		}
		if !first {
			w.b = append(w.b, ',')
		}
		first = false
		w.b = append(w.b, '"')
		w.b = append(w.b, f.Key...)
		w.b = append(w.b, '"', ':')
		var err error
		switch f.Kind {
		case diskstate.String:
			err = w.str(*f.Str(d))
		case diskstate.Strings:
			w.b = append(w.b, '[')
			for j, s := range *f.Strs(d) {
				if j > 0 {
					w.b = append(w.b, ',')
				}
				if err = w.str(s); err != nil {
					break
				}
			}
			w.b = append(w.b, ']')
		case diskstate.Bool:
			w.b = strconv.AppendBool(w.b, *f.Bool(d))
		case diskstate.Time:
			err = w.time(*f.Time(d))
		case diskstate.Uint:
			w.b = strconv.AppendUint(w.b, *f.Uint(d), 10)
		}
		if err != nil {
			return err
		}
	}
	w.b = append(w.b, '}')
	return nil
}

// str appends s as a JSON string. Printable ASCII other than '"' and '\\'
// is written as it is, which is what encoding/json does without HTML
// escaping; any other string goes through encoding/json.
func (w *diskJSONWriter) str(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return w.slow(s)
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
	return nil
}

// time appends t as time.Time's MarshalJSON does (RFC 3339 with the
// fraction it has) where that cannot fail; elsewhere through encoding/json,
// which fails as it always did.
func (w *diskJSONWriter) time(t time.Time) error {
	if y := t.Year(); y >= 0 && y < 10000 {
		if _, off := t.Zone(); off > -24*3600 && off < 24*3600 && off%60 == 0 {
			w.b = append(w.b, '"')
			w.b = t.AppendFormat(w.b, time.RFC3339Nano)
			w.b = append(w.b, '"')
			return nil
		}
	}
	return w.slow(t)
}

func (w *diskJSONWriter) slow(v any) error {
	if w.enc == nil {
		w.enc = json.NewEncoder(&w.scratch)
		w.enc.SetEscapeHTML(false)
	}
	w.scratch.Reset()
	if err := w.enc.Encode(v); err != nil {
		return err
	}
	w.b = append(w.b, bytes.TrimSuffix(w.scratch.Bytes(), []byte("\n"))...)
	return nil
}
