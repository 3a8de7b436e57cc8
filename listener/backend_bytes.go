package listener

import (
	"net/netip"

	"github.com/fulcrumlb/fulcrum/pool"
)

// BackendBytes is the Observer that adds every connection's bytes to its backend's totals
// (pool.Status.BytesIn and BytesOut, shown by the status API), chunk by chunk while the
// connection runs. The backend itself is the Meter, so this costs no allocation per connection.
type BackendBytes struct{}

var (
	_ QuickCloser = BackendBytes{}
	_ Meter       = (*pool.Backend)(nil)
)

// Rejected implements Observer; it has nothing to count.
func (BackendBytes) Rejected(netip.AddrPort, error) {}

// DialFailed implements Observer; it has nothing to count.
func (BackendBytes) DialFailed(*pool.Backend, error) {}

// Opened implements Observer: the connection's backend counts its bytes.
func (BackendBytes) Opened(c *ConnInfo) Meter { return c.Backend }

// Closed implements Observer; the bytes were counted as they moved.
func (BackendBytes) Closed(*ConnInfo, Traffic) {}

// QuickClose implements QuickCloser: Closed and the backend's Flush do nothing.
func (BackendBytes) QuickClose() {}
