package diskstate

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTableMatchesStruct: the table lists Disk's fields in order, each
// under its JSON tag, with the accessor of that very field.
func TestTableMatchesStruct(t *testing.T) {
	typ := reflect.TypeFor[Disk]()
	fs := Fields()
	if len(fs) != typ.NumField() || NumFields() != len(fs) {
		t.Fatalf("table has %d fields, Disk %d", len(fs), typ.NumField())
	}
	cols := map[string]bool{}
	for i, f := range fs {
		sf := typ.Field(i)
		if tag := strings.Split(sf.Tag.Get("json"), ",")[0]; tag != f.Key {
			t.Errorf("field %d: table key %q, struct tag %q", i, f.Key, tag)
		}
		var d Disk
		set(&f, &d)
		if v := reflect.ValueOf(d).Field(i); v.IsZero() {
			t.Errorf("table entry %q does not set struct field %s", f.Key, sf.Name)
		}
		if f.Kind == 0 || (f.Wire != "" && f.Kind == Time) {
			t.Errorf("field %q: kind %d cannot be used (times are not announced)", f.Key, f.Kind)
		}
		if f.Column != "" && cols[f.Column] {
			t.Errorf("field %q: column %q repeated", f.Key, f.Column)
		}
		cols[f.Column] = true
		if (f.Kind == String || f.Kind == Strings) && f.Wire != "" && f.Max <= 0 {
			t.Errorf("announced field %q has no size limit", f.Key)
		}
		if got, ok := FieldByKey(f.Key); !ok || got.Key != f.Key {
			t.Errorf("FieldByKey(%q) = %v", f.Key, ok)
		}
		if f.Wire != "" && WireIndex(f.Wire) != i {
			t.Errorf("WireIndex(%q) = %d, want %d", f.Wire, WireIndex(f.Wire), i)
		}
	}
	// The JSON of a disk has the table's keys in the table's order (every
	// field set, since OmitZero fields are left out when zero, as their
	// omitzero tags make encoding/json do).
	var full Disk
	for i := range fs {
		set(&fs[i], &full)
	}
	b, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	zero, err := json.Marshal(Disk{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if has := strings.Contains(string(zero), `"`+f.Key+`":`); has == f.OmitZero {
			t.Errorf("field %q: OmitZero is %v, but the JSON of a zero disk has it: %v", f.Key, f.OmitZero, has)
		}
	}
	last := -1
	for _, f := range fs {
		i := strings.Index(string(b), `"`+f.Key+`":`)
		if i <= last {
			t.Errorf("JSON key %q missing or out of order in %s", f.Key, b)
		}
		last = i
	}
}

// set gives field f of d a non-zero value.
func set(f *Field, d *Disk) {
	switch f.Kind {
	case String:
		*f.Str(d) = "x"
	case Strings:
		*f.Strs(d) = []string{"x"}
	case Bool:
		*f.Bool(d) = true
	case Time:
		*f.Time(d) = time.Unix(1, 0)
	case Uint:
		*f.Uint(d) = 1 << 40 // far beyond the fill-level threshold
	}
}

// TestSameAnnouncedCoversTheTable: changing any announced field makes two
// disks differ; changing any other field does not.
func TestSameAnnouncedCoversTheTable(t *testing.T) {
	for _, f := range Fields() {
		var a, b Disk
		set(&f, &b)
		want := f.Wire == ""
		if got := a.SameAnnounced(&b); got != want {
			t.Errorf("field %q changed: SameAnnounced = %v, want %v", f.Key, got, want)
		}
		if f.Key == "hostname" && a.SameContent(&b) {
			t.Error("SameContent ignores the hostname")
		}
		// ChangedFields names exactly what SameContent tells apart.
		var keys []string
		if f.Wire != "" || f.Key == "hostname" {
			keys = []string{f.Key}
		}
		if got := ChangedFields(&a, &b); !slices.Equal(got, keys) {
			t.Errorf("field %q changed: ChangedFields = %q, want %q", f.Key, got, keys)
		}
	}
}

func TestHostAndSort(t *testing.T) {
	ds := []Disk{{Hostname: "b", Device: "/dev/a"}, {HostID: "id", Device: "/dev/z"}, {Hostname: "a", Device: "/dev/b"},
		{Hostname: "a", Device: "/dev/a", UUID: "2"}, {Hostname: "a", Device: "/dev/a", UUID: "1"}}
	SortDisks(ds)
	var got []string
	for _, d := range ds {
		got = append(got, d.Host()+d.Device+d.UUID)
	}
	if want := "id/dev/z a/dev/a1 a/dev/a2 a/dev/b b/dev/a"; strings.Join(got, " ") != want {
		t.Errorf("sorted: %q, want %q", strings.Join(got, " "), want)
	}
}
