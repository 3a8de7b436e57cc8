package pool

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ChangeKind says what a registry change touched, so that a persister can decide how urgently
// to save it: membership, weight and state changes before the admin reply, heartbeat-only
// changes at a bounded rate.
type ChangeKind int

// The kinds of change the pool reports through OnChange.
const (
	ChangeHeartbeat  ChangeKind = iota // only a heartbeat time moved
	ChangeMembership                   // a backend joined, came back, was removed or forgotten
	ChangeWeight                       // a backend's weight changed
	ChangeState                        // a backend was drained or undrained (health transitions are not reported)
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeHeartbeat:
		return "heartbeat"
	case ChangeMembership:
		return "membership"
	case ChangeWeight:
		return "weight"
	case ChangeState:
		return "state"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Record is one backend as it is saved to a state file or handed to a successor process: what
// is needed to serve again at once after a restart. Live connection counts are not part of it:
// they belong to the process that carries the connections.
type Record struct {
	Host          string    `json:"host"`
	Port          int       `json:"port"`
	Weight        int       `json:"weight"`
	Static        bool      `json:"static"`
	Removed       bool      `json:"removed"`
	Draining      bool      `json:"draining"` // sticky until undrained, as in a rolling upgrade
	State         State     `json:"state"`    // as computed at export; informational
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Created       time.Time `json:"created_time"`
}

// Export returns every backend still known as a Record, sorted by key.
func (p *Pool) Export() []Record {
	now := p.now()
	p.mu.Lock()
	out := make([]Record, 0, len(p.backends))
	for _, b := range p.backends {
		out = append(out, Record{
			Host:          b.addr.Host,
			Port:          b.addr.Port,
			Weight:        b.weight,
			Static:        b.static,
			Removed:       b.removed,
			State:         b.state(now, p.TTL),
			LastHeartbeat: b.lastHeartbeat,
			Created:       b.created,
			Draining:      b.health.draining,
		})
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// Import restores records saved by Export into the pool, typically at start-up before any
// connection. It checks every record first and changes nothing when one is invalid.
//
//   - Removed records are skipped: their connections, if any, belong to another process.
//   - Static records only restore the created time of a static backend already registered
//     from the configuration; a static backend no longer configured is dropped.
//   - A record whose key is already known (configured as static) is otherwise skipped: the
//     configuration wins.
//   - The others come back with their weight, times and draining flag, without a slow-start
//     ramp; one whose TTL has passed is kept out of picking and forgotten by the next Sweep.
//     Health (down, backoff) is not restored: a dial or a check finds it again.
//
// It returns how many backends it added. OnChange is not called.
func (p *Pool) Import(recs []Record) (int, error) {
	addrs, err := checkRecords(recs)
	if err != nil {
		return 0, err
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backends == nil {
		p.backends = make(map[string]*Backend)
	}
	added := 0
	for i, r := range recs {
		if r.Removed {
			continue
		}
		if known := p.backends[addrs[i].Key()]; known != nil {
			if r.Static && known.static && !r.Created.IsZero() {
				known.created = r.Created
			}
			continue
		}
		if r.Static {
			continue
		}
		b := newBackend(addrs[i], r.Weight, false, r.Created) // no ramp: restored, not joining
		b.lastHeartbeat = r.LastHeartbeat
		b.health.draining = r.Draining
		p.backends[b.key] = b
		p.place(b, now) // pickable unless draining or expired
		added++
	}
	if added > 0 {
		p.tableChanged()
	}
	return added, nil
}

// CheckRecords validates records as Import does, changing nothing: a caller restoring several
// pools checks them all before it fills any.
func CheckRecords(recs []Record) error {
	_, err := checkRecords(recs)
	return err
}

// checkRecords validates every record and returns their canonical addresses.
func checkRecords(recs []Record) ([]Address, error) {
	addrs := make([]Address, len(recs))
	seen := make(map[string]bool, len(recs))
	for i, r := range recs {
		host, err := ParseHost(r.Host)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		if r.Port < 1 || r.Port > 65535 {
			return nil, fmt.Errorf("record %d: port %d outside 1..65535", i, r.Port)
		}
		if r.Weight < 1 || r.Weight > MaxWeight {
			return nil, fmt.Errorf("record %d: weight %d outside 1..%d", i, r.Weight, MaxWeight)
		}
		if r.LastHeartbeat.IsZero() || r.Created.IsZero() {
			return nil, fmt.Errorf("record %d: missing heartbeat or created time", i)
		}
		addrs[i] = Address{Host: host, Port: r.Port}
		if seen[addrs[i].Key()] {
			return nil, fmt.Errorf("record %d: %w: %s", i, errDuplicate, addrs[i].Key())
		}
		seen[addrs[i].Key()] = true
	}
	return addrs, nil
}

var errDuplicate = errors.New("duplicate backend")

// changed reports a change to OnChange, if set. It is called with p.mu released, on the
// goroutine that made the change and before the changing method returns, so a synchronous
// OnChange (a state-file save) completes before the admin API replies.
func (p *Pool) changed(kind ChangeKind) {
	if p.OnChange != nil {
		p.OnChange(kind)
	}
}

// unlockChanged releases p.mu and then reports *kind, if it is set (>= 0). Methods that change
// the registry defer it in place of p.mu.Unlock.
func (p *Pool) unlockChanged(kind *ChangeKind) {
	if *kind == ChangeMembership || *kind == ChangeWeight {
		p.tableChanged()
	}
	p.mu.Unlock()
	if *kind > noChange {
		p.changed(*kind)
	}
}

// noChange marks a method call that changed nothing worth reporting.
const noChange ChangeKind = -1
