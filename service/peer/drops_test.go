package peer

import (
	"fmt"
	"testing"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/wire"
)

// TestRefusedPartsCountEach: an announcement carried by several datagrams
// and refused as a whole (a replay, here) counts every datagram as
// dropped, so that packets_dropped matches what came in.
func TestRefusedPartsCountEach(t *testing.T) {
	s, inv, _, feed := receiver(t, nil)
	var disks []diskstate.Disk
	for i := range 3 * wire.MaxDisksPerPart {
		disks = append(disks, diskstate.Disk{Device: fmt.Sprintf("/dev/fake%03d", i), UUID: fmt.Sprint(i)})
	}
	grams, err := wire.Encode(msg(wire.KindAnnounce, "peer", 7, disks...), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(grams) < 3 {
		t.Fatalf("%d parts, want at least 3", len(grams))
	}
	for _, g := range grams {
		feed(g)
	}
	if n := len(inv.Disks()); n != len(disks) {
		t.Fatalf("%d disks applied, want %d", n, len(disks))
	}
	for _, g := range grams { // the same announcement again
		feed(g)
	}
	st := s.Stats()
	if st.Drops[DropReplay] != uint64(len(grams)) || st.Dropped != uint64(len(grams)) {
		t.Errorf("a replay of %d parts: drops %v (dropped %d), want replay %d", len(grams), st.Drops, st.Dropped, len(grams))
	}
}
