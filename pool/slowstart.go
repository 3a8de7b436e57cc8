package pool

import "time"

// permille is the scale of effective weights: a weight of w counts as w×permille.
const permille = 1000

// rampFloor is where slow start begins, in thousandths of the full weight.
const rampFloor = 100

// ramp is a backend's slow start. Guarded by Pool.mu.
type ramp struct {
	start time.Time // when the ramp began
	on    bool      // in Pool.ramps
}

// rampSet lists the backends still ramping, with when their weights are next brought up to
// date; between steps the heap keeps their last effective weight.
type rampSet struct {
	list []*Backend
	next time.Time
}

// rampSteps is how many times a ramp updates its weight over the window: fine enough for
// least connections to follow it, rare enough to cost nothing on picks in between.
const rampSteps = 100

// startRamp begins b's slow start at 10% of its weight; a no-op when SlowStart is off.
func (p *Pool) startRamp(b *Backend, now time.Time) {
	if p.SlowStart <= 0 {
		return
	}
	b.ramp.start = now
	if !b.ramp.on {
		b.ramp.on = true
		p.ramps.list = append(p.ramps.list, b)
	}
	p.setEffective(b, now)
	if b.index >= 0 {
		p.live.fix(b.index)
	}
}

// setEffective recomputes b's effective weight: linear from 10% to 100% over SlowStart.
func (p *Pool) setEffective(b *Backend, now time.Time) {
	b.eff = int64(b.weight) * rampPermille(now.Sub(b.ramp.start), p.SlowStart, b.ramp.on)
}

func rampPermille(elapsed, window time.Duration, on bool) int64 {
	if !on || window <= 0 || elapsed >= window {
		return permille
	}
	elapsed = max(elapsed, 0)
	return rampFloor + (permille-rampFloor)*int64(elapsed)/int64(window)
}

// stepRamps brings the ramping backends' weights up to date, at most rampSteps times per
// window: O(k log n) for k ramping backends, and nothing on the picks in between.
func (p *Pool) stepRamps(now time.Time) {
	if len(p.ramps.list) == 0 || now.Before(p.ramps.next) {
		return
	}
	p.ramps.next = now.Add(max(p.SlowStart/rampSteps, time.Millisecond))
	kept := p.ramps.list[:0]
	for _, b := range p.ramps.list {
		if p.SlowStart <= 0 || now.Sub(b.ramp.start) >= p.SlowStart || p.backends[b.key] != b {
			b.ramp.on = false
		}
		p.setEffective(b, now)
		if b.index >= 0 {
			p.live.fix(b.index)
		}
		if b.ramp.on {
			kept = append(kept, b)
		}
	}
	clear(p.ramps.list[len(kept):])
	p.ramps.list = kept
}
