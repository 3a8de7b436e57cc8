package pool

// Lookup returns the status of the backend with this key, if it is still known. The admin API
// uses it to tell a heartbeat of a known backend from a new registration without a Snapshot.
func (p *Pool) Lookup(key string) (Status, bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.backends[key]
	if b == nil {
		return Status{}, false
	}
	return b.status(now, p.TTL), true
}
