package present

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/diskd/diskd/service/diskstate"
)

// Output says how a disk table is printed; its options are lsblk's, and the
// control socket and diskctl parse them into it alike. The zero value is
// the default table.
type Output struct {
	Columns    []string // headers, in order; nil means DefaultColumns (-o, -O)
	NoHeadings bool     // no header line (-n)
	Bytes      bool     // sizes in bytes, not human units (-b)
	Raw        bool     // one space between cells, blanks escaped, no alignment (-r)
	Pairs      bool     // KEY="value" pairs (-P)
	Sort       string   // column to sort by (--sort); "" keeps the list's order
}

// AllColumns is every column a disk table can show, in the table's order
// (-O).
func AllColumns() []string {
	var out []string
	for _, f := range diskstate.Fields() {
		if f.Column != "" {
			out = append(out, f.Column)
		}
	}
	return out
}

// ParseColumns reads the argument of -o: a comma-separated list of column
// names (any case), or one starting with "+" that adds to the default
// columns, as lsblk does. An unknown or repeated column is an error that
// names it and lists the known ones.
func ParseColumns(spec string) ([]string, error) {
	var cols []string
	if rest, ok := strings.CutPrefix(spec, "+"); ok {
		cols, spec = DefaultColumns(), rest
	}
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("no column given; columns are %s", strings.Join(AllColumns(), ","))
	}
	for name := range strings.SplitSeq(spec, ",") {
		f, ok := diskstate.FieldByColumn(strings.TrimSpace(name))
		if !ok {
			return nil, fmt.Errorf("unknown column %q; columns are %s", Escape(name), strings.Join(AllColumns(), ","))
		}
		if slices.Contains(cols, f.Column) {
			continue // "+LABEL" when LABEL is a default: shown once
		}
		cols = append(cols, f.Column)
	}
	return cols, nil
}

// Check reports the first problem of o: an unknown column, an unknown sort
// column, or both -r and -P.
func (o Output) Check() error {
	for _, c := range o.Columns {
		if _, ok := diskstate.FieldByColumn(c); !ok {
			return fmt.Errorf("unknown column %q", Escape(c))
		}
	}
	if o.Sort != "" {
		if _, ok := diskstate.FieldByColumn(o.Sort); !ok {
			return fmt.Errorf("unknown sort column %q; columns are %s", Escape(o.Sort), strings.Join(AllColumns(), ","))
		}
	}
	if o.Raw && o.Pairs {
		return fmt.Errorf("-r (raw) and -P (pairs) exclude each other")
	}
	return nil
}

// DisksOutput is a disk list as o asks: an aligned table (the default, as
// DisksTable), raw lines or KEY="value" pairs, with the columns, headings,
// units and order that o selects. Nothing is written when there are no
// disks. Every value is escaped: no disk string can break a line or a cell.
func DisksOutput(disks []diskstate.Disk, o Output) []byte {
	names := o.Columns
	if len(names) == 0 {
		names = DefaultColumns()
	}
	cols := columns(names)
	if o.Sort != "" {
		if f, ok := diskstate.FieldByColumn(o.Sort); ok {
			disks = slices.Clone(disks)
			slices.SortStableFunc(disks, func(a, b diskstate.Disk) int { return compareField(&f, &a, &b) })
		}
	}
	var b bytes.Buffer
	if len(disks) == 0 {
		return nil
	}
	switch {
	case o.Pairs:
		for i := range disks {
			for j := range cols {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(pairKey(cols[j].Column))
				b.WriteString(`="`)
				b.WriteString(pairValue(value(&cols[j], &disks[i], o.Bytes)))
				b.WriteByte('"')
			}
			b.WriteByte('\n')
		}
	case o.Raw:
		rows := make([][]string, 0, len(disks)+1)
		if !o.NoHeadings {
			header := make([]string, len(cols))
			for j := range cols {
				header[j] = cols[j].Column
			}
			rows = append(rows, header)
		}
		for i := range disks {
			r := make([]string, len(cols))
			for j := range cols {
				r[j] = rawValue(value(&cols[j], &disks[i], o.Bytes))
			}
			rows = append(rows, r)
		}
		guardAnswerEnd(rows)
		for _, r := range rows {
			b.WriteString(strings.Join(r, " "))
			b.WriteByte('\n')
		}
	default:
		header := make([]string, len(cols))
		for j := range cols {
			header[j] = cols[j].Column
		}
		rows := make([][]string, 0, len(disks))
		for i := range disks {
			r := make([]string, len(cols))
			for j := range cols {
				r[j] = cell(value(&cols[j], &disks[i], o.Bytes))
			}
			rows = append(rows, r)
		}
		if o.NoHeadings {
			header = nil
		}
		writeTable(&b, header, rows)
	}
	return b.Bytes()
}

// value is a field of d as text, not yet escaped: sizes in lsblk's human
// units (or bytes), flags as yes or no, lists joined with commas, "" when
// absent.
func value(f *diskstate.Field, d *diskstate.Disk, inBytes bool) string {
	if f.Show != nil {
		return f.Show(d)
	}
	switch f.Kind {
	case diskstate.Uint:
		n := *f.Uint(d)
		switch {
		case n == 0:
			return ""
		case inBytes || !f.Bytes:
			return strconv.FormatUint(n, 10)
		}
		return HumanSize(n)
	case diskstate.String:
		return *f.Str(d)
	case diskstate.Strings:
		return strings.Join(*f.Strs(d), ",")
	case diskstate.Bool:
		if *f.Bool(d) {
			return "yes"
		}
		return "no"
	case diskstate.Time:
		if t := *f.Time(d); !t.IsZero() {
			return t.Format(time.RFC3339)
		}
	}
	return ""
}

// compareField orders two disks by one field: numbers by value, flags
// false first, everything else by its text.
func compareField(f *diskstate.Field, a, b *diskstate.Disk) int {
	switch f.Kind {
	case diskstate.Uint:
		return cmp.Compare(*f.Uint(a), *f.Uint(b))
	case diskstate.Time:
		return f.Time(a).Compare(*f.Time(b))
	case diskstate.Bool:
		x, y := *f.Bool(a), *f.Bool(b)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	}
	return strings.Compare(value(f, a, true), value(f, b, true))
}

// HumanSize is a size as lsblk prints it: powers of 1024 with a
// one-letter suffix (B K M G T P E) and at most one decimal, rounded half
// up, a trailing ".0" dropped: 512B, 1K, 1.5K, 16M, 931.5G.
func HumanSize(n uint64) string {
	exp := 0
	for exp < 60 && n >= 1<<(exp+10) {
		exp += 10
	}
	suffix := "BKMGTPE"[exp/10]
	if exp == 0 {
		return strconv.FormatUint(n, 10) + "B"
	}
	dec := n >> exp
	rem := n & (1<<exp - 1)
	// Thousandths, cut, then rounded half up to tenths, as lsblk does.
	var frac uint64
	if rem >= math.MaxUint64/1000 {
		frac = (rem >> 10) * 1000 >> (exp - 10)
	} else {
		frac = rem * 1000 >> exp
	}
	tenths := (frac + 50) / 100
	if tenths == 10 {
		dec, tenths = dec+1, 0
	}
	if tenths == 0 {
		return strconv.FormatUint(dec, 10) + string(suffix)
	}
	return strconv.FormatUint(dec, 10) + "." + strconv.FormatUint(tenths, 10) + string(suffix)
}

// rawValue is one cell of -r output: escaped as in tables, and blanks as
// \x20 so that a line splits on spaces exactly into its cells; "" stays
// empty.
func rawValue(s string) string {
	s = Escape(s)
	if !strings.ContainsAny(s, " \u00a0") {
		return s
	}
	return strings.NewReplacer(" ", `\x20`, "\u00a0", `\u00a0`).Replace(s)
}

// pairKey is a column name as a -P key: a shell variable name, every
// character other than a letter, digit or _ made _ (HOST-ID is HOST_ID).
func pairKey(col string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, col)
}

// pairValue is a value inside the double quotes of -P output: escaped as
// in tables, and besides the characters a shell gives meaning to inside
// double quotes (" \ $ `) as \xNN, so that `eval` of a line assigns the
// escaped text and runs nothing.
func pairValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\' || r == '$' || r == '`':
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(Escape(s[i : i+size]))
		}
		i += size
	}
	return b.String()
}

// guardAnswerEnd escapes the first letter of a line's first cell when the
// line would read as the end of a control-socket answer ("OK", "ERR ...").
func guardAnswerEnd(rows [][]string) {
	for _, r := range rows {
		if len(r) == 0 {
			continue
		}
		if c := r[0]; c == "OK" || c == "ERR" || strings.HasPrefix(c, "ERR ") || (len(r) == 1 && strings.HasPrefix(c, "ERR")) {
			r[0] = fmt.Sprintf(`\x%02x`, c[0]) + c[1:]
		}
	}
}

// DiskInfo is every attribute of one disk, one a line, as `info` shows it:
// a first line naming the device and its host, then "  key: value" for
// each field of the table in its order, sizes in human units with the
// exact bytes after them (only bytes with inBytes), "-" for an absent
// value.
func DiskInfo(d *diskstate.Disk, inBytes bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s on %s:\n", cell(d.Device), cell(d.Host()))
	width := 0
	for _, f := range diskstate.Fields() {
		width = max(width, len(f.Key))
	}
	for _, f := range diskstate.Fields() {
		if f.OmitZero && f.Empty(d) {
			continue // as in JSON: what only a remembered disk has
		}
		var v string
		switch {
		case f.Kind == diskstate.Uint && f.Bytes && !inBytes && *f.Uint(d) > 0:
			v = fmt.Sprintf("%s (%d bytes)", HumanSize(*f.Uint(d)), *f.Uint(d))
		case f.Kind == diskstate.Uint || f.Kind == diskstate.String:
			v = cell(value(&f, d, inBytes))
		case f.Key == "hostname":
			v = cell(d.Hostname)
		default:
			v = Cell(&f, d)
		}
		fmt.Fprintf(&b, "  %-*s %s\n", width+1, f.Key+":", v)
	}
	return b.Bytes()
}

// Change is one field of a disk that changed: its key and its value
// before and after, as text (unescaped; "" when absent).
type Change struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// DiskChanges lists the fields in which two versions of a disk differ, in
// the table's order; last_seen, which moves with every announcement, is
// left out. Sizes are in human units, as tables show them.
func DiskChanges(old, cur *diskstate.Disk) []Change {
	var out []Change
	for _, f := range diskstate.Fields() {
		if f.Kind == diskstate.Time || f.Equal(old, cur) {
			continue
		}
		out = append(out, Change{Key: f.Key, Old: value(&f, old, false), New: value(&f, cur, false)})
	}
	return out
}

// ChangesText is changes for people: "label: A → B, fs_avail: 40G → 12G",
// every value escaped, "-" for an absent one.
func ChangesText(changes []Change) string {
	parts := make([]string, len(changes))
	for i, c := range changes {
		parts[i] = c.Key + ": " + cell(c.Old) + " → " + cell(c.New)
	}
	return strings.Join(parts, ", ")
}
