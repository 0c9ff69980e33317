package peer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

// MachineIDPath is where the host id comes from when none is given.
const MachineIDPath = "/etc/machine-id"

// NewIdentity settles who this host is on the wire: the host id given, else
// the one in /etc/machine-id; the hostname given, else the kernel's; and a
// fresh random id for this daemon instance.
func NewIdentity(hostID, hostname string) (Identity, error) {
	id := Identity{HostID: hostID, Hostname: hostname}
	if id.HostID == "" {
		b, err := os.ReadFile(MachineIDPath)
		if err != nil {
			return id, fmt.Errorf("reading the host id: %w (set one with --host-id)", err)
		}
		id.HostID = strings.TrimSpace(string(b))
		if id.HostID == "" {
			return id, fmt.Errorf("%s is empty (set a host id with --host-id)", MachineIDPath)
		}
	}
	if id.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return id, fmt.Errorf("reading the hostname: %w (set one with --hostname)", err)
		}
		id.Hostname = h
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return id, errors.New("no randomness for the instance id")
	}
	id.BootID = hex.EncodeToString(b[:])
	return id, nil
}

// AddTo adds the datagram counters to a status.
func (st Stats) AddTo(s *diskstate.Status) {
	s.PacketsIn, s.PacketsOut, s.PacketsDropped, s.Drops = st.In, st.Out, st.Dropped, st.Drops
}

// AnnouncesOn reports whether the protocol announces at once because of an
// inventory event: any change to this host's own disks is told to the peers
// without waiting for the next periodic announcement.
func AnnouncesOn(e inventory.Event) bool {
	switch e.Kind {
	case inventory.DiskAppeared, inventory.DiskDisappeared, inventory.DiskChanged:
		return e.Disk.Local
	}
	return false
}
