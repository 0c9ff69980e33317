package multicast

import (
	"net"
	"testing"
)

func TestPayloadBudget(t *testing.T) {
	ifs := func(mtus ...int) []net.Interface {
		var out []net.Interface
		for _, m := range mtus {
			out = append(out, net.Interface{MTU: m})
		}
		return out
	}
	for _, c := range []struct {
		ifaces []net.Interface
		ttl    int
		want   int
	}{
		{ifs(1500), 1, 1472},
		{ifs(1500, 9000), 1, 1472},
		{ifs(9000), 1, 8972},
		{ifs(9000), 2, MinBudget},
		{ifs(1280), 1, 1252},
		{ifs(1000), 3, 972},
		{ifs(0), 1, MinBudget},
	} {
		if got := payloadBudget(c.ifaces, c.ttl); got != c.want {
			t.Errorf("payloadBudget(%v, ttl %d) = %d, want %d", c.ifaces, c.ttl, got, c.want)
		}
	}
}
