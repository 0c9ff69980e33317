package present

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// memoryTime is how times of remembered disks are shown to people.
const memoryTime = "2006-01-02 15:04 MST"

// Since says how long ago something happened in words, for sentences:
// "just now", "42 seconds ago", "5 minutes ago", "2 hours ago", "3 days ago".
func Since(d time.Duration) string {
	d = max(d, 0)
	unit := func(n int, one string) string {
		if n == 1 {
			return "1 " + one + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, one)
	}
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return unit(int(d/time.Second), "second")
	case d < time.Hour:
		return unit(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return unit(int(d/time.Hour), "hour")
	}
	return unit(int(d/(24*time.Hour)), "day")
}

// GoneLine is the answer of find for a disk that is not attached anywhere,
// from memory: "BACKUP-2019 is not attached anywhere now; last seen on beta
// (/dev/sdb1) 3 days ago, 2026-11-28 14:02 UTC, gone: detached". Every
// string is escaped.
func GoneLine(d *diskstate.Disk, now time.Time) string {
	s := fmt.Sprintf("%s is not attached anywhere now; last seen on %s (%s) %s, %s",
		Escape(d.Name()), Escape(d.Host()), Escape(d.Device), Since(now.Sub(d.LastSeen)),
		d.LastSeen.UTC().Format(memoryTime))
	if d.GoneReason != "" {
		s += ", gone: " + Escape(d.GoneReason)
	}
	if strings.HasPrefix(s, "ERR ") { // a label must not end a control-socket answer
		s = `\x45` + s[1:]
	}
	return s
}

// GoneLines is GoneLine for each disk, one a line.
func GoneLines(disks []diskstate.Disk, now time.Time) []byte {
	var b bytes.Buffer
	for i := range disks {
		b.WriteString(GoneLine(&disks[i], now))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// DisksTableAll is DisksTable with a LAST-SEEN column: "present" for a
// disk attached now, else when it was last seen (UTC) and why it is gone.
func DisksTableAll(disks []diskstate.Disk) []byte {
	cols := columns(DefaultColumns())
	header := make([]string, 0, len(cols)+1)
	for _, f := range cols {
		header = append(header, f.Column)
	}
	header = append(header, "LAST-SEEN")
	rows := make([][]string, 0, len(disks))
	for i := range disks {
		d := &disks[i]
		last := "present"
		if !d.Present {
			last = d.LastSeen.UTC().Format("2006-01-02T15:04Z")
			if d.GoneReason != "" {
				last += "(" + cell(d.GoneReason) + ")"
			}
		}
		rows = append(rows, append(row(cols, d), last))
	}
	var b bytes.Buffer
	writeTable(&b, header, rows)
	return b.Bytes()
}

// HistoryTable is the human form of a history: a header line
// LABEL UUID HOST DEVICE FROM UNTIL GONE and one aligned line per
// sighting (times in UTC, UNTIL "now" while it lasts); nothing when there
// are none.
func HistoryTable(hs []diskstate.Sighting) []byte {
	rows := make([][]string, 0, len(hs))
	for _, h := range hs {
		until := h.Until.UTC().Format(memoryTime)
		if h.Reason == "" {
			until = "now"
		}
		host := h.Hostname
		if host == "" {
			host = h.HostID
		}
		rows = append(rows, []string{cell(h.Label), cell(h.UUID), cell(host), cell(h.Device),
			h.From.UTC().Format(memoryTime), until, cell(h.Reason)})
	}
	var b bytes.Buffer
	writeTable(&b, []string{"LABEL", "UUID", "HOST", "DEVICE", "FROM", "UNTIL", "GONE"}, rows)
	return b.Bytes()
}

// HistoryJSON is the --json form of a history: one line holding an array
// (never null) of sightings with diskstate.Sighting's keys.
func HistoryJSON(hs []diskstate.Sighting) ([]byte, error) {
	if hs == nil {
		hs = []diskstate.Sighting{}
	}
	return JSONLine(hs)
}
