package etcdreg

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// Entry is one backend as etcd holds it, under Prefix/Service/HostPort.
type Entry struct {
	Service  string    // the service the backend serves
	HostPort string    // "host:port" as registered, IPv6 hosts in brackets
	Weight   int       // 1 or more
	Draining bool      // sticky until undrained, whichever instance drained it
	Created  time.Time // when the key was created: the backend's first heartbeat
	// Address is the IP the instance that created the key checked against its backend address
	// rules and dials, when the host is a name; "" for an address literal, or when unknown.
	// Every instance dials it, so none resolves the name again.
	Address string
}

// value is what a key holds.
type value struct {
	Weight   int       `json:"weight"`
	Draining bool      `json:"draining"`
	Created  time.Time `json:"created"`
	Address  string    `json:"address,omitempty"` // Entry.Address
}

func (v value) encode() string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("etcdreg: encode %+v: %v", v, err)) // ints, a bool and a time cannot fail
	}
	return string(b)
}

func decodeValue(b []byte) (value, error) {
	var v value
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("value %q: %w", b, err)
	}
	if err := pool.CheckWeight(v.Weight); err != nil || v.Weight < 1 {
		return v, fmt.Errorf("value %q: weight %d outside 1..%d", b, v.Weight, pool.MaxWeight)
	}
	return v, nil
}

// ErrInvalid marks a service name or backend address that cannot be a key.
var ErrInvalid = errors.New("etcd registry: invalid key")

// checkService accepts the names pool.ParseServiceName accepts.
func checkService(s string) error {
	if _, err := pool.ParseServiceName(s); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkHostPort accepts a backend address that pool.ParseAddress reads and that is written
// the one way Address.Key writes it, so that one backend has one key ("h:080" and "h:+80" are
// not a second key for "h:80").
func checkHostPort(s string) error {
	a, err := pool.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if a.Key() != s {
		return fmt.Errorf("%w: backend %q: not written as %q", ErrInvalid, s, a.Key())
	}
	return nil
}

// keyOf builds the key of a backend after checking both parts.
func keyOf(prefix, service, hostport string) (string, error) {
	if err := checkService(service); err != nil {
		return "", err
	}
	if err := checkHostPort(hostport); err != nil {
		return "", err
	}
	return prefix + "/" + service + "/" + hostport, nil
}

// splitKey reads service and host:port back from a key under prefix.
func splitKey(prefix, key string) (service, hostport string, err error) {
	rest, ok := strings.CutPrefix(key, prefix+"/")
	if !ok {
		return "", "", fmt.Errorf("%w: key %q outside %s/", ErrInvalid, key, prefix)
	}
	service, hostport, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: key %q: want %s/SERVICE/HOST:PORT", ErrInvalid, key, prefix)
	}
	if err := checkService(service); err != nil {
		return "", "", err
	}
	if err := checkHostPort(hostport); err != nil {
		return "", "", err
	}
	return service, hostport, nil
}

// entryOf reads a key and its value.
func entryOf(prefix string, key, val []byte) (Entry, error) {
	service, hostport, err := splitKey(prefix, string(key))
	if err != nil {
		return Entry{}, err
	}
	v, err := decodeValue(val)
	if err != nil {
		return Entry{}, fmt.Errorf("key %s: %w", key, err)
	}
	return Entry{Service: service, HostPort: hostport, Weight: v.Weight, Draining: v.Draining, Created: v.Created, Address: v.Address}, nil
}
