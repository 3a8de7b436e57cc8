package pool

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Address names a backend: a canonical host (an IP literal or a lower-case DNS name) and a port.
type Address struct {
	Host string
	Port int
	// IP is the address to dial, resolved once at registration so that the name cannot be
	// rebound between the policy check and the dial. It is not part of Key. The zero value
	// means "dial Host as it is" (an IP literal, or a name resolved at each dial).
	IP netip.Addr
}

// DialHost is the host the listener dials: IP when set, Host otherwise.
func (a Address) DialHost() string {
	if a.IP.IsValid() {
		return a.IP.String()
	}
	return a.Host
}

// Key is the backend's registry key, "host:port" with IPv6 hosts in brackets.
func (a Address) Key() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

const maxNameLen = 253

var (
	errEmptyHost = errors.New("host is empty")
	errEmptyPort = errors.New("port is required")
)

// ParseHost validates a backend host and returns its canonical form: an IP literal (IPv4, or
// IPv6 with or without brackets, IPv4-mapped IPv6 reduced to IPv4) or an RFC 1123 host name.
// Zones, ports, IPv4 with leading zeros and anything else are refused.
func ParseHost(s string) (string, error) {
	if s == "" {
		return "", errEmptyHost
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		ip, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("host %q: bracketed host is not an IPv6 address", s)
		}
		return ip.Unmap().String(), nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("host %q: zoned addresses are not supported", s)
		}
		return ip.Unmap().String(), nil
	}
	if err := checkHostName(s); err != nil {
		return "", fmt.Errorf("host %q: %w", s, err)
	}
	return strings.ToLower(strings.TrimSuffix(s, ".")), nil
}

// checkHostName applies RFC 1123: dot-separated labels of 1 to 63 letters, digits and inner
// hyphens, 253 bytes at most. A name whose last label is all digits is refused, because it
// would read as an IPv4 address (such as "0177.0.0.1") that the IP parser rejected.
func checkHostName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > maxNameLen {
		return errors.New("not an IP address or a host name of 1 to 253 bytes")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	if isNumeric(labels[len(labels)-1]) {
		return errors.New("not a valid IP address, and a host name cannot end in a numeric label")
	}
	return nil
}

func checkLabel(l string) error {
	if l == "" || len(l) > 63 {
		return errors.New("host name labels must be 1 to 63 bytes")
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return errors.New("host name labels cannot start or end with '-'")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Errorf("host name has an invalid character %q", c)
		}
	}
	return nil
}

// isNumeric reports whether a label reads as a number to inet_aton (decimal, octal or 0x hex),
// so that names such as "0x7f000001" or "127.1" cannot reach a resolver that would take them
// for an address.
func isNumeric(l string) bool {
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		return l == "0x" || l == "0X" || isHex(l[2:]) // inet_aton reads a bare "0x" as 0
	}
	return isDigits(l)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lower-case letters; digits are unchanged
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ParsePort parses a decimal port in 1..65535 strictly: digits only, no sign, no spaces, no
// leading zero, no other base or exponent.
func ParsePort(s string) (int, error) {
	if s == "" {
		return 0, errEmptyPort
	}
	n, err := parseDecimal(s, 65535)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("port %q: must be a number from 1 to 65535", s)
	}
	return n, nil
}

// ParseWeight parses a weight in 1..MaxWeight as strictly as ParsePort.
func ParseWeight(s string) (int, error) {
	n, err := parseDecimal(s, MaxWeight)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("weight %q: must be a number from 1 to %d", s, MaxWeight)
	}
	return n, nil
}

// parseDecimal accepts only ASCII digits without a leading zero (which some parsers read as
// octal) and at most max; it never overflows.
func parseDecimal(s string, max int) (int, error) {
	if !isDigits(s) || len(s) > 6 || s[0] == '0' {
		return 0, errors.New("not a decimal number")
	}
	n, _ := strconv.Atoi(s) // cannot fail: at most six digits
	if n > max {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// ParseAddress parses "host:port" (IPv6 as "[::1]:port") into a canonical Address.
func ParseAddress(hostport string) (Address, error) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return Address{}, fmt.Errorf("backend %q: %w", hostport, err)
	}
	host, err := ParseHost(h)
	if err != nil {
		return Address{}, fmt.Errorf("backend %q: %w", hostport, err)
	}
	port, err := ParsePort(p)
	if err != nil {
		return Address{}, fmt.Errorf("backend %q: %w", hostport, err)
	}
	return Address{Host: host, Port: port}, nil
}
