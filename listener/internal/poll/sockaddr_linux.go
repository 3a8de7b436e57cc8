//go:build linux

package poll

import (
	"encoding/binary"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Accept accepts one connection, non-blocking and close-on-exec, with its peer's address.
// unix.Accept4 would ask the listener's protocol (getsockopt SO_PROTOCOL, for L2TP) and
// allocate a Sockaddr on every call: a system call and an allocation per connection that a
// TCP listener does not need.
func Accept(lfd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(fd), rawAddrPort(&rsa), nil
}

// LocalAddrPort is the address a socket is bound to (getsockname), read as Accept does.
func LocalAddrPort(fd int) (netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return netip.AddrPort{}, errno
	}
	return rawAddrPort(&rsa), nil
}

// rawAddrPort reads an IPv4 or IPv6 socket address, IPv4-mapped IPv6 unmapped; the zero
// AddrPort for any other family.
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), networkPort(&sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), networkPort(&sa.Port))
	}
	return netip.AddrPort{}
}

// networkPort reads a port kept in network byte order.
func networkPort(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// Family is the socket family that connects to ap: IPv4 for an IPv4-mapped IPv6 address too.
func Family(ap netip.AddrPort) int {
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// SocketError is a socket's pending error (SO_ERROR) as a system call error of op ("read",
// "connect"), so that callers can tell resets and timeouts apart as usual; nil if none.
func SocketError(fd int, op string) error {
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = syscall.Errno(errno)
	}
	if err != nil {
		return os.NewSyscallError(op, err)
	}
	return nil
}
