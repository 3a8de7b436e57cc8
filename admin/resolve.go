package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// resolveTimeout bounds one name resolution made for a registration.
const resolveTimeout = 5 * time.Second

// resolve looks a backend name up once. A name that does not exist is the caller's mistake
// (400); a resolver that fails or times out is not (503, worth retrying).
func (a *API) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	lookup := a.Security.LookupHost
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ips, err := lookup(ctx, host)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return nil, &statusError{http.StatusBadRequest, fmt.Sprintf("host %s does not resolve", host)}
	case err != nil:
		return nil, &statusError{http.StatusServiceUnavailable, fmt.Sprintf("resolve %s: %v", host, err)}
	case len(ips) == 0:
		return nil, &statusError{http.StatusBadRequest, fmt.Sprintf("host %s has no address", host)}
	}
	return ips, nil
}

// localRefresh is how long the list of this machine's addresses is reused.
const localRefresh = 10 * time.Second

// localCache remembers this machine's addresses and IPv4 broadcast addresses for a short
// while, so that a registration does not cost a netlink dump.
type localCache struct {
	mu      sync.Mutex
	fetched time.Time
	addrs   []netip.Addr
	bcasts  []netip.Addr
	err     error
}

func (c *localCache) isLocal(list func() ([]netip.Prefix, error), ip netip.Addr) bool {
	addrs, _ := c.get(list)
	return slices.Contains(addrs, ip)
}

func (c *localCache) isBroadcast(list func() ([]netip.Prefix, error), ip netip.Addr) bool {
	_, bcasts := c.get(list)
	return slices.Contains(bcasts, ip)
}

func (c *localCache) get(list func() ([]netip.Prefix, error)) (addrs, bcasts []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fetched.IsZero() || time.Since(c.fetched) > localRefresh {
		c.fetched = time.Now()
		c.addrs, c.bcasts, c.err = interfaceAddrs(list)
	}
	return c.addrs, c.bcasts
}

// interfaceAddrs lists the machine's addresses and the broadcast address of each IPv4
// network wider than /31.
func interfaceAddrs(list func() ([]netip.Prefix, error)) (addrs, bcasts []netip.Addr, err error) {
	if list == nil {
		list = systemInterfaces
	}
	prefixes, err := list()
	if err != nil {
		return nil, nil, fmt.Errorf("list interface addresses: %w", err)
	}
	for _, p := range prefixes {
		ip := normalize(p.Addr())
		addrs = append(addrs, ip)
		if ip.Is4() && p.Bits() <= 30 {
			b := ip.As4()
			for i := p.Bits(); i < 32; i++ {
				b[i/8] |= 0x80 >> (i % 8)
			}
			bcasts = append(bcasts, netip.AddrFrom4(b))
		}
	}
	return addrs, bcasts, nil
}

func systemInterfaces() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipnet.IP)
		if !ok {
			continue
		}
		ones, _ := ipnet.Mask.Size()
		if ip.Is4In6() && ones >= 96 {
			ones -= 96
		}
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}
