package pool

// Lookup implements Registry.
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
