package diskstate

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTableMatchesStruct holds the table to Disk: one entry per field, in
// order, keyed by the field's JSON tag.
func TestTableMatchesStruct(t *testing.T) {
	typ := reflect.TypeFor[Disk]()
	if typ.NumField() != NumFields() {
		t.Fatalf("Disk has %d fields, the table %d", typ.NumField(), NumFields())
	}
	cols := map[string]bool{}
	for i := range NumFields() {
		f := FieldAt(i)
		if tag := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]; tag != f.Key {
			t.Errorf("field %d: json tag %q, table key %q", i, tag, f.Key)
		}
		if f.Column == "" || cols[f.Column] {
			t.Errorf("field %s: column %q empty or repeated", f.Key, f.Column)
		}
		cols[f.Column] = true
		if f.Wire != "" && WireIndex(f.Wire) != i {
			t.Errorf("field %s: wire key %q not unique", f.Key, f.Wire)
		}
	}
}

// set gives field f of d a non-empty value that differs from the zero
// value by far more than the fill threshold.
func set(f *Field, d *Disk) {
	switch f.Kind {
	case String:
		*f.Str(d) = "x"
	case Strings:
		*f.Strs(d) = []string{"/x"}
	case Bool:
		*f.Bool(d) = true
	case Time:
		*f.Time(d) = time.Unix(1, 0)
	case Uint:
		*f.Uint(d) = 1 << 40
	}
}

// TestSameAnnouncedCoversTheTable fails when an announced field of the
// table is not compared by SameAnnounced (or a field that is not announced
// is).
func TestSameAnnouncedCoversTheTable(t *testing.T) {
	for _, f := range Fields() {
		var a, b Disk
		set(&f, &b)
		if f.Empty(&b) {
			t.Fatalf("%s: set left it empty", f.Key)
		}
		if same := a.SameAnnounced(&b); same != (f.Wire == "") {
			t.Errorf("%s (wire %q): SameAnnounced = %v after changing it", f.Key, f.Wire, same)
		}
		if f.Equal(&a, &b) {
			t.Errorf("%s: Equal after changing it", f.Key)
		}
	}
}

func TestFillChanged(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name         string
		size, a1, a2 uint64
		want         bool
	}{
		{"small fs below 1%", 20 << 20, 10 << 20, 10<<20 + 100<<10, false},
		{"small fs at 1%", 20 << 20, 10 << 20, 10<<20 + (20<<20)/100, true},
		{"big fs below 1 GiB", 4 << 40, 2 << 40, 2<<40 - gib + 1, false},
		{"big fs at 1 GiB", 4 << 40, 2 << 40, 2<<40 - gib, true},
		{"equal", 1000, 5, 5, false},
	} {
		a := Disk{FSSize: c.size, FSAvail: c.a1, FSUsed: c.size - c.a1}
		b := Disk{FSSize: c.size, FSAvail: c.a2, FSUsed: c.size - c.a2}
		if got := FillChanged(&a, &b); got != c.want {
			t.Errorf("%s: FillChanged = %v, want %v", c.name, got, c.want)
		}
		b.KeepFill(&a)
		if kept := b.FSAvail == a.FSAvail; kept == c.want && c.a1 != c.a2 {
			t.Errorf("%s: KeepFill kept=%v", c.name, kept)
		}
	}
	if !FillChanged(&Disk{}, &Disk{FSSize: 1}) {
		t.Error("mounting (fs_size appears) is not a change")
	}
}
