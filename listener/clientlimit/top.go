package clientlimit

import (
	"net/netip"
	"slices"
)

// Client is one client's open connections, for status.
type Client struct {
	Addr netip.Prefix // an IPv4 /32 or an IPv6 /64
	Open int
}

// Top is the n clients with the most open connections, most first (ties by address). It
// visits every shard in turn, one lock at a time: for status pages, not for the data path.
func (t *Table) Top(n int) []Client {
	var out []Client
	for i := range t.shards {
		out = t.shards[i].appendOpen(out)
	}
	slices.SortFunc(out, func(a, b Client) int {
		if a.Open != b.Open {
			return b.Open - a.Open
		}
		return a.Addr.Addr().Compare(b.Addr.Addr())
	})
	return out[:min(n, len(out))]
}

// appendOpen appends the shard's clients with open connections.
func (sh *shard) appendOpen(out []Client) []Client {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, i := range sh.index {
		if e := &sh.arena[i]; e.open > 0 {
			out = append(out, Client{Addr: e.k.prefix(), Open: int(e.open)})
		}
	}
	return out
}
