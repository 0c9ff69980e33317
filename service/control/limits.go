package control

import (
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of the Server's limits (see the package documentation, "Limits").
const (
	// DefaultIdleTimeout is how long a connection may wait between requests.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultRequestTimeout is how long a request line may take from its
	// first byte to its line end.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxConnsPerUser caps the connections of one user other than root.
	DefaultMaxConnsPerUser = 16
	// DefaultEvictAfter is how long a connection must have been idle before
	// it may be closed to make room for a new one.
	DefaultEvictAfter = 5 * time.Second
)

// unknownUID is the user of a connection whose peer cannot be told (not a
// Unix socket): such connections share one per-user quota.
const unknownUID = -1

// peerUID returns the uid of the process at the other end of a Unix socket
// (SO_PEERCRED: the one that connected), or unknownUID.
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return unknownUID
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return unknownUID
	}
	uid := unknownUID
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

// conn is one served connection as the table sees it.
type conn struct {
	c   net.Conn
	uid int

	// Guarded by the table's mutex.
	idle      bool      // waiting for the first byte of a request
	idleSince time.Time // when it became idle
	gone      bool      // removed from the table (closed or evicted)
}

// connTable admits connections under the limits: at most max in all, at
// most perUser for each user other than root, and reserve of the max kept
// for root. When a limit is reached it closes the connection that has been
// idle longest (at least evictAfter) among those that count against that
// limit, preferring the user with the most connections.
type connTable struct {
	max, perUser, reserve int
	evictAfter            time.Duration

	mu      sync.Mutex
	conns   map[*conn]struct{}
	perUID  map[int]int
	nonRoot int
}

func newConnTable(limit, perUser int, evictAfter time.Duration) *connTable {
	reserve := 0
	if limit > 1 {
		reserve = max(1, limit/8)
	}
	return &connTable{max: limit, perUser: perUser, reserve: reserve, evictAfter: evictAfter,
		conns: map[*conn]struct{}{}, perUID: map[int]int{}}
}

// admit adds c to the table, closing an idle connection to make room when a
// limit is reached. It returns a message for the refusal when there is no
// room.
func (t *connTable) admit(cn *conn, now time.Time) (refusal string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cn.uid != 0 && t.perUID[cn.uid] >= t.perUser {
		if !t.evictLocked(now, func(o *conn) bool { return o.uid == cn.uid }) {
			return fmt.Sprintf("too many connections from uid %d (at most %d)", cn.uid, t.perUser)
		}
	}
	if len(t.conns) >= t.max {
		if !t.evictLocked(now, func(*conn) bool { return true }) {
			return "too many connections"
		}
	}
	if cn.uid != 0 && t.nonRoot >= t.max-t.reserve {
		if !t.evictLocked(now, func(o *conn) bool { return o.uid != 0 }) {
			return "too many connections"
		}
	}
	cn.idle, cn.idleSince = true, now
	t.conns[cn] = struct{}{}
	t.perUID[cn.uid]++
	if cn.uid != 0 {
		t.nonRoot++
	}
	return ""
}

// evictLocked closes the best idle connection that eligible accepts and
// reports whether there was one.
func (t *connTable) evictLocked(now time.Time, eligible func(*conn) bool) bool {
	var victim *conn
	for o := range t.conns {
		if !o.idle || now.Sub(o.idleSince) < t.evictAfter || !eligible(o) {
			continue
		}
		if victim == nil {
			victim = o
			continue
		}
		if nv, no := t.perUID[victim.uid], t.perUID[o.uid]; no != nv {
			if no > nv {
				victim = o
			}
			continue
		}
		if o.idleSince.Before(victim.idleSince) {
			victim = o
		}
	}
	if victim == nil {
		return false
	}
	t.removeLocked(victim)
	victim.c.Close()
	return true
}

func (t *connTable) removeLocked(cn *conn) {
	if cn.gone {
		return
	}
	cn.gone = true
	delete(t.conns, cn)
	if t.perUID[cn.uid]--; t.perUID[cn.uid] == 0 {
		delete(t.perUID, cn.uid)
	}
	if cn.uid != 0 {
		t.nonRoot--
	}
}

// remove takes cn out of the table (it may have been evicted already).
func (t *connTable) remove(cn *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(cn)
}

// setIdle marks cn as waiting for a request (idle) or working on one.
func (t *connTable) setIdle(cn *conn, idle bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cn.idle, cn.idleSince = idle, now
}

// closeAll closes every connection (the server is stopping).
func (t *connTable) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for cn := range t.conns {
		cn.c.Close()
	}
}
