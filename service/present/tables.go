package present

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/diskd/diskd/service/diskstate"
)

// DefaultColumns are the columns of a disk table, by header, in order.
func DefaultColumns() []string {
	return []string{"HOST", "DEVICE", "TYPE", "LABEL", "UUID", "MOUNTED"}
}

// DisksTable is the human form of a disk list: a header line of
// DefaultColumns (HOST DEVICE TYPE LABEL UUID MOUNTED) and one aligned line
// per disk, every field escaped, "-" for an empty field; nothing when there
// are no disks.
func DisksTable(disks []diskstate.Disk) []byte {
	cols := columns(DefaultColumns())
	header := make([]string, len(cols))
	for i, f := range cols {
		header[i] = f.Column
	}
	rows := make([][]string, 0, len(disks))
	for i := range disks {
		rows = append(rows, row(cols, &disks[i]))
	}
	var b bytes.Buffer
	writeTable(&b, header, rows)
	return b.Bytes()
}

// DiskRow is one disk as a line of a disk table shows it: the cells of
// DefaultColumns, not aligned.
func DiskRow(d *diskstate.Disk) []string { return row(columns(DefaultColumns()), d) }

func row(cols []diskstate.Field, d *diskstate.Disk) []string {
	out := make([]string, len(cols))
	for j := range cols {
		out[j] = Cell(&cols[j], d)
	}
	return out
}

// columns returns the fields whose Column is in names, in the order of
// names; names no field has are left out.
func columns(names []string) []diskstate.Field {
	all := diskstate.Fields()
	out := make([]diskstate.Field, 0, len(names))
	for _, n := range names {
		for _, f := range all {
			if f.Column == n {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// Cell is one field of a disk as a table shows it: escaped, "-" when empty;
// a list joined with commas, a bool as yes or no, a time in RFC 3339, a
// size in human units (HumanSize), any other number in decimal.
func Cell(f *diskstate.Field, d *diskstate.Disk) string {
	return cell(value(f, d, false))
}

// PeersTable is the human form of a peer list: a header line
// HOSTNAME HOST-ID ADDRESS DISKS LAST-HEARD TIMEOUT AUTH VIA and one aligned
// line per peer, last heard counted back from now; nothing when there are
// no peers.
func PeersTable(peers []diskstate.Peer, now time.Time) []byte {
	rows := make([][]string, 0, len(peers))
	for _, p := range peers {
		auth := "no"
		if p.Authenticated {
			auth = "yes"
		}
		rows = append(rows, []string{cell(p.Hostname), cell(p.HostID), cell(p.Address),
			strconv.Itoa(p.Disks), Ago(now.Sub(p.LastHeard)), p.Timeout.String(), auth, cell(p.Via)})
	}
	var b bytes.Buffer
	writeTable(&b, []string{"HOSTNAME", "HOST-ID", "ADDRESS", "DISKS", "LAST-HEARD", "TIMEOUT", "AUTH", "VIA"}, rows)
	return b.Bytes()
}

// cell escapes one table field; an empty field shows as "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return Escape(s)
}

// Text is one untrusted string for people: escaped, "-" when empty.
func Text(s string) string { return cell(s) }

// writeTable writes an aligned table: a header line and one line per row,
// columns separated by two spaces, widths counted in runes of the (already
// escaped) text. It writes nothing when there are no rows. A first cell that
// would make its line look like the end of a control-socket answer ("OK",
// "ERR ...") gets its first letter escaped here, before the widths are
// measured.
//
// A nil header writes the rows alone (-n).
func writeTable(b *bytes.Buffer, header []string, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	guardAnswerEnd(rows)
	all := rows
	if header != nil {
		all = append([][]string{header}, rows...)
	}
	widths := make([]int, len(all[0]))
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range all {
		for i, c := range r {
			b.WriteString(c)
			if i == len(r)-1 {
				break
			}
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		b.WriteByte('\n')
	}
}

// Ago formats how long ago something happened, for people: "2.1s ago",
// "42s ago", "3m05s ago", "2h07m ago", "3d04h ago". A negative duration
// (clock skew) counts as zero.
func Ago(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh ago", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
