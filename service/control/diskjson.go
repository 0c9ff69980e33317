package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/diskd/diskd/service/inventory"
)

// DisksJSON is the --json form of a disk list: one line holding an array
// (never null) of disk objects with inventory.Disk's keys, mountpoints
// always an array.
//
// The bytes are exactly those of encoding/json (an Encoder with
// SetEscapeHTML(false)) given the disks with nil mount points made empty;
// the tests hold it to that. It writes them itself because at scale the
// reflection was most of `list --json` (issue 7's profile: 16,000 disks),
// and it hands every string that needs escaping to encoding/json, so that
// the escaping stays the library's.
func DisksJSON(disks []inventory.Disk) ([]byte, error) {
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

func (w *diskJSONWriter) disk(d *inventory.Disk) error {
	for _, f := range [...]struct{ key, val string }{
		{`{"host_id":`, d.HostID}, {`,"hostname":`, d.Hostname}, {`,"device":`, d.Device},
		{`,"uuid":`, d.UUID}, {`,"partuuid":`, d.PartUUID}, {`,"label":`, d.Label}, {`,"type":`, d.Type},
	} {
		w.b = append(w.b, f.key...)
		if err := w.str(f.val); err != nil {
			return err
		}
	}
	w.b = append(w.b, `,"mountpoints":[`...)
	for i, m := range d.Mountpoints {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		if err := w.str(m); err != nil {
			return err
		}
	}
	w.b = append(w.b, `],"local":`...)
	if d.Local {
		w.b = append(w.b, "true"...)
	} else {
		w.b = append(w.b, "false"...)
	}
	w.b = append(w.b, `,"last_seen":`...)
	if err := w.time(d.LastSeen); err != nil {
		return err
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
