package clientlimit

import (
	"errors"
	"net/netip"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The reasons Admit refuses a client, as fulcrum_client_refused_total's reason label.
const (
	ReasonConns = "conns" // MaxConns open already
	ReasonRate  = "rate"  // over its Rate
	ReasonACL   = "acl"   // outside Allow, or inside Deny
)

const (
	// DefaultCapacity is how many clients a table remembers when Config.Capacity is 0.
	DefaultCapacity = 65536
	defaultShards   = 64
)

// ErrReleaseBug: a Release without a matching Admit (a count would go below zero).
var ErrReleaseBug = errors.New("clientlimit: release of a connection the table did not admit")

// Config is a service's per-client bounds. Its zero value admits everyone and tracks nothing.
type Config struct {
	MaxConns int            // open connections per client; 0: no limit
	Rate     Rate           // new connections per client; zero: no limit
	Allow    []netip.Prefix // when not empty, only these clients; empty: everyone
	Deny     []netip.Prefix // never these clients, even when allowed
	Capacity int            // clients remembered (see the package doc); 0: DefaultCapacity
	Shards   int            // locks the table is split over, rounded up to a power of two; 0: 64
}

// Table is one service's per-client state. It is safe for concurrent use.
type Table struct {
	maxConns int
	rate     Rate
	allow    acl
	deny     acl
	track    bool // MaxConns or Rate is on: Admit keeps an entry per client
	shards   []shard
	mask     uint64
}

// Ticket is an admitted connection's claim on its client's count, for Release. The zero
// Ticket holds nothing (the table tracks no counts); releasing it does nothing.
type Ticket struct {
	sh  *shard
	idx int32
	gen uint32
}

// New makes the table of cfg.
func New(cfg Config) *Table {
	want := cfg.Shards
	if want <= 0 {
		want = defaultShards
	}
	n := 1
	for n < want {
		n <<= 1
	}
	capacity := cfg.Capacity
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	t := &Table{
		maxConns: max(cfg.MaxConns, 0),
		rate:     cfg.Rate,
		allow:    newACL(cfg.Allow),
		deny:     newACL(cfg.Deny),
		track:    cfg.MaxConns > 0 || cfg.Rate.On(),
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
	}
	for i := range t.shards {
		t.shards[i].init(max(capacity/n, 1))
	}
	return t
}

// Admit decides on a new connection from addr at now. It returns the connection's ticket,
// and "" when the client is admitted, or the reason it is not (ReasonACL, ReasonRate,
// ReasonConns); a refused connection holds nothing and is not released.
func (t *Table) Admit(addr netip.Addr, now time.Time) (Ticket, string) {
	addr = addr.Unmap().WithZone("")
	if t.deny.contains(addr) || !t.allow.empty() && !t.allow.contains(addr) {
		return Ticket{}, ReasonACL
	}
	if !t.track {
		return Ticket{}, ""
	}
	k := keyOf(addr)
	sh := &t.shards[xxhash.Sum64(k[:])&t.mask]
	return sh.admit(k, t, now.UnixNano())
}

// Release gives back the count an admitted connection held, once it has ended. It returns
// ErrReleaseBug when the client had no open connection (released twice, or never admitted).
func (t *Table) Release(tk Ticket) error {
	if tk.sh == nil {
		return nil
	}
	return tk.sh.release(tk.idx, tk.gen)
}

// Len is how many clients the table remembers now.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.index)
		sh.mu.Unlock()
	}
	return n
}

// key is a client: an IPv4 address in its IPv4-mapped form, or an IPv6 address's /64.
type key [16]byte

func keyOf(a netip.Addr) key {
	k := key(a.As16())
	if !a.Is4() {
		clear(k[8:])
	}
	return k
}

// prefix is the client k stands for: an IPv4 /32 or an IPv6 /64.
func (k key) prefix() netip.Prefix {
	a := netip.AddrFrom16(k)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
	}
	return netip.PrefixFrom(a, 64)
}
