package listener

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// ProxyProtocol configures the PROXY protocol (HAProxy's, v1 text or v2 binary) on both sides of
// a Server. The zero value speaks none: nothing is read from clients, nothing sent to backends.
//
// Sending (Send 1 or 2): right after each backend dial, before any client byte, the backend gets
// a header naming the client's address and port as the source and the address the client
// connected to as the destination. Then the sockets are spliced as without it.
//
// Accepting (Accept non-empty): a peer inside one of the prefixes must open with a header, and the
// client it names is the one used for picking (the hash policy), logging, observers and the
// outbound header. A trusted peer without a header is refused, as the protocol's specification
// asks ("the receiver must not try to guess whether the protocol header is present"); a LOCAL
// header (a health check from the proxy itself) keeps the real addresses. A peer outside the
// prefixes that opens with a header is refused too: a header is never trusted from it, and
// passing it on as data would only confuse the backend. To see whether such a peer sends a header
// its first bytes are waited for, for up to HeaderTimeout; a protocol in which the server
// speaks first therefore waits that long before its backend is dialed, for clients outside the
// prefixes only.
//
// Reading the header never wraps the client socket: the header is parsed from a small bufio.Reader,
// the bytes it read past the header are written to the backend first, and the raw *net.TCPConn
// is then spliced as usual.
type ProxyProtocol struct {
	// Send is the header version written to backends: 0 for none, 1 (text) or 2 (binary).
	Send byte
	// Accept lists the peers whose PROXY header is read and believed; nil means none, and then
	// no client byte is inspected at all.
	Accept []netip.Prefix
	// HeaderTimeout bounds the wait for an inbound header (or, from other peers, for the first
	// bytes); zero means 3s.
	HeaderTimeout time.Duration
}

// Errors of the inbound PROXY header, as Observer.Rejected hears them.
var (
	ErrProxyHeaderMissing   = errors.New("trusted peer sent no PROXY header")
	ErrProxyHeaderUntrusted = errors.New("PROXY header from a peer not trusted to send one")
)

// proxyHeaderBuf is the read buffer for the inbound header; the library reads a header byte by
// byte, so the buffer only bounds how much client data is read along with it.
const proxyHeaderBuf = 512

func (pp *ProxyProtocol) headerTimeout() time.Duration {
	if pp.HeaderTimeout > 0 {
		return pp.HeaderTimeout
	}
	return 3 * time.Second
}

// accepts reports whether inbound headers are read at all.
func (pp *ProxyProtocol) accepts() bool { return len(pp.Accept) > 0 }

func (pp *ProxyProtocol) trusts(peer netip.Addr) bool {
	for _, p := range pp.Accept {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// judge decides on what reading a client's first bytes found (h and err as proxyproto.Read
// returns them), on both data planes: a trusted peer's header moves info to the addresses it
// names; a trusted peer without one, or an untrusted peer with one, is refused (the error);
// an untrusted peer's plain bytes pass.
func (pp *ProxyProtocol) judge(h *proxyproto.Header, err error, info *ConnInfo) error {
	if !pp.trusts(info.Client.Addr()) {
		return untrustedHeader(err)
	}
	if err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) || isTimeout(err) {
			return ErrProxyHeaderMissing
		}
		return fmt.Errorf("PROXY header from %s: %w", info.Client, err)
	}
	useProxyHeader(h, info)
	return nil
}

// outbound is the header a backend gets before the client's bytes; nil when Send is 0.
func (pp *ProxyProtocol) outbound(info *ConnInfo) *proxyproto.Header {
	if pp.Send == 0 {
		return nil
	}
	return proxyproto.HeaderProxyFromAddrs(pp.Send, net.TCPAddrFromAddrPort(info.Client), net.TCPAddrFromAddrPort(info.Local))
}

// untrustedHeader judges what reading a header from an untrusted peer found: no signature, or
// no byte in time, is a plain client; a failed read is that failure; a header, whole or broken,
// is refused.
func untrustedHeader(err error) error {
	var oe *net.OpError
	switch {
	case err == nil:
		return ErrProxyHeaderUntrusted
	case errors.Is(err, proxyproto.ErrNoProxyProtocol) || isTimeout(err):
		return nil
	case errors.As(err, &oe):
		return fmt.Errorf("read from client: %w", err)
	}
	return ErrProxyHeaderUntrusted
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// useProxyHeader takes the client and destination from a PROXY command over TCP; LOCAL, UNKNOWN
// and non-TCP headers leave the real addresses in place, as the specification says.
func useProxyHeader(h *proxyproto.Header, info *ConnInfo) {
	if !h.Command.IsProxy() {
		return
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return
	}
	info.Peer = info.Client
	info.Client = unmapped(src.AddrPort())
	info.Local = unmapped(dst.AddrPort())
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ParseProxyVersion reads a --proxy-protocol value: "" or "none" for 0, "v1" or "1", "v2" or "2".
func ParseProxyVersion(s string) (byte, error) {
	switch s {
	case "", "none", "off":
		return 0, nil
	case "v1", "1":
		return 1, nil
	case "v2", "2":
		return 2, nil
	}
	return 0, fmt.Errorf("proxy protocol %q: want v1 or v2", s)
}
