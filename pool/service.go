package pool

import "fmt"

// DefaultService is the name of the service the top-level flags define, and the one a request
// that names no service means.
const DefaultService = "default"

// ParseServiceName checks a service name: 1 to 63 characters of a-z, 0-9, '-', '_' and '.'.
// Names appear in URLs, metric labels and registry keys, so nothing else is allowed.
func ParseServiceName(s string) (string, error) {
	if len(s) == 0 || len(s) > 63 {
		return "", fmt.Errorf("service name %q: want 1 to 63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("service name %q: only a-z, 0-9, '-', '_' and '.' are allowed", s)
		}
	}
	return s, nil
}
