package peer

import (
	"hash/maphash"
	"time"

	"github.com/diskd/diskd/service/wire"
)

// maxKnown bounds the senders a listener remembers parts of.
const maxKnown = 8192

// knownParts remembers, per sender (host id and daemon instance), the
// announcement parts of its last generation: a hash of each part's disk
// bytes, and whether that generation was applied whole. A part of an
// applied generation that repeats its bytes changes nothing, so the
// receiver need not decode and check its disks again: nearly every
// announcement is one. The hashes are keyed with a random seed, so a
// sender cannot make another's parts collide with its own.
//
// A knownParts belongs to one receive loop and is not safe for concurrent
// use.
type knownParts struct {
	seed    maphash.Seed
	senders map[knownKey]*knownGen
}

type knownKey struct{ host, boot string }

type knownGen struct {
	gen      uint64
	hostname string
	interval time.Duration
	sums     []uint64 // by part index
	have     []bool   // by part index
	complete bool     // applied whole
}

func newKnownParts() *knownParts {
	return &knownParts{seed: maphash.MakeSeed(), senders: map[knownKey]*knownGen{}}
}

// sum hashes a part's disk bytes.
func (k *knownParts) sum(raw string) uint64 { return maphash.String(k.seed, raw) }

// has reports whether m, a part whose disk bytes hash to sum, repeats a
// part of a generation applied whole.
func (k *knownParts) has(m *wire.Message, sum uint64) bool {
	if m.Gen == 0 {
		return false
	}
	g := k.senders[knownKey{m.HostID, m.BootID}]
	return g != nil && g.complete && g.gen == m.Gen && len(g.sums) == m.Parts &&
		g.hostname == m.Hostname && g.interval == m.Interval && g.sums[m.Part] == sum
}

// add records the hash of a part that goes to the assembler.
func (k *knownParts) add(m *wire.Message, sum uint64) {
	if m.Gen == 0 {
		return
	}
	key := knownKey{m.HostID, m.BootID}
	g := k.senders[key]
	if g == nil || g.gen != m.Gen || len(g.sums) != m.Parts || g.hostname != m.Hostname || g.interval != m.Interval {
		if g == nil && len(k.senders) >= maxKnown {
			for other := range k.senders { // forget any one
				delete(k.senders, other)
				break
			}
		}
		g = &knownGen{gen: m.Gen, hostname: m.Hostname, interval: m.Interval,
			sums: make([]uint64, m.Parts), have: make([]bool, m.Parts)}
		k.senders[key] = g
	}
	if g.have[m.Part] && g.sums[m.Part] != sum {
		// Other bytes under the same generation (a sender's bug): the
		// generation no longer vouches for its parts until it is whole again.
		g.complete = false
	}
	g.sums[m.Part], g.have[m.Part] = sum, true
}

// complete records that the announcement whole, of every part recorded,
// was applied.
func (k *knownParts) complete(whole *wire.Message) {
	g := k.senders[knownKey{whole.HostID, whole.BootID}]
	if g == nil || g.gen != whole.Gen || whole.Gen == 0 {
		return
	}
	for _, ok := range g.have {
		if !ok {
			return
		}
	}
	g.complete = true
}
