package clientlimit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParseClientCIDR reads a --allow-client or --deny-client value (flag names which, for the
// error): a CIDR, or a bare address as its /32 or /128. Host bits are cleared.
func ParseClientCIDR(flag, s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil && a.Zone() != "" {
			err = errZone
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if errors.Is(err, errZone) {
		return netip.Prefix{}, fmt.Errorf("invalid value %q for --%s: %w; write the address without %%zone", s, flag, err)
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid value %q for --%s: want an address or CIDR, such as 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32", s, flag)
	}
	return unmapPrefix(p).Masked(), nil
}

// errZone: a scoped address (fe80::1%eth0) names a link, not a client.
var errZone = errors.New("a zone names a link, not a client")

// unmapPrefix writes an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) as the IPv4 one it
// means, since clients are compared unmapped.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// acl is a set of prefixes, looked up by length: one map per prefix length in use, so a
// check costs one map lookup per distinct length, not a scan of the list.
type acl struct {
	lens []prefixLen
}

type prefixLen struct {
	bits int
	is4  bool
	set  map[netip.Prefix]struct{}
}

func newACL(prefixes []netip.Prefix) acl {
	var a acl
	for _, p := range prefixes {
		p = unmapPrefix(p).Masked()
		a.lenFor(p).set[p] = struct{}{}
	}
	return a
}

func (a *acl) lenFor(p netip.Prefix) *prefixLen {
	for i := range a.lens {
		if a.lens[i].bits == p.Bits() && a.lens[i].is4 == p.Addr().Is4() {
			return &a.lens[i]
		}
	}
	a.lens = append(a.lens, prefixLen{bits: p.Bits(), is4: p.Addr().Is4(), set: make(map[netip.Prefix]struct{})})
	return &a.lens[len(a.lens)-1]
}

func (a *acl) empty() bool { return len(a.lens) == 0 }

// contains reports whether addr (unmapped) is in one of the prefixes.
func (a *acl) contains(addr netip.Addr) bool {
	for i := range a.lens {
		l := &a.lens[i]
		if l.is4 != addr.Is4() {
			continue
		}
		p, err := addr.Prefix(l.bits)
		if err != nil {
			continue
		}
		if _, ok := l.set[p]; ok {
			return true
		}
	}
	return false
}
