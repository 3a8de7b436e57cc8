package admin_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// stateSeries are the fulcrum_backend_state series of one backend: state → value.
func stateSeries(fams opsFamilies, service string, a pool.Address) map[string]float64 {
	out := map[string]float64{}
	f := fams["fulcrum_backend_state"]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		if opsLabelsMatch(m, svcLabels(service, a)) {
			out[opsLabel(m.GetLabel(), "state")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// checkStates: one series per state the status API reports, 1 for want and 0 for the others.
func checkStates(t *testing.T, fams opsFamilies, a pool.Address, want pool.State) {
	t.Helper()
	got := stateSeries(fams, pool.DefaultService, a)
	if len(got) != len(pool.States()) {
		t.Errorf("%s: state series %v, want one per state %v", a.Key(), got, pool.States())
	}
	for _, s := range pool.States() {
		v, ok := got[string(s)]
		if !ok || v != one(s == want) {
			t.Errorf("%s: fulcrum_backend_state{state=%q} = %v (present %v), want %v", a.Key(), s, v, ok, one(s == want))
		}
	}
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// fulcrum_backend_up and fulcrum_backend_state follow a backend through static, up, draining
// and removal; a forgotten backend's series disappear.
func TestMetricsBackendUpAndState(t *testing.T) {
	static, dyn := opsEcho(t), opsEcho(t)
	rig := newOpsMetricsRig(t, static)
	if _, err := rig.pool.Register(dyn, 2); err != nil {
		t.Fatal(err)
	}
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_backend_up", svcLabels(pool.DefaultService, static), 1)
	rig.expect(t, fams, "fulcrum_backend_up", svcLabels(pool.DefaultService, dyn), 1)
	checkStates(t, fams, static, pool.StateStatic)
	checkStates(t, fams, dyn, pool.StateUp)

	if err := rig.pool.Drain(dyn.Key()); err != nil {
		t.Fatal(err)
	}
	fams = rig.scrape(t)
	rig.expect(t, fams, "fulcrum_backend_up", svcLabels(pool.DefaultService, dyn), 0)
	checkStates(t, fams, dyn, pool.StateDraining)

	if err := rig.pool.Deregister(dyn.Key()); err != nil { // idle: forgotten at once
		t.Fatal(err)
	}
	fams = rig.scrape(t)
	for _, name := range []string{"fulcrum_backend_up", "fulcrum_backend_state", "fulcrum_health_checks_failed_total"} {
		if v := opsValue(fams, name, svcLabels(pool.DefaultService, dyn)); v != -1 {
			t.Errorf("%s of a removed backend still exposed (%v)", name, v)
		}
	}
	rig.expect(t, fams, "fulcrum_backend_up", svcLabels(pool.DefaultService, static), 1)
}

// fulcrum_health_checks_failed_total counts the active checks of a dead backend, which goes
// down (up 0, state down) once HealthFall of them failed.
func TestMetricsHealthChecksFailed(t *testing.T) {
	dead, live := opsDeadAddress(t), opsEcho(t)
	rig := newOpsMetricsRig(t, dead, live)
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_health_checks_failed_total", svcLabels(pool.DefaultService, dead), 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rig.pool.Maintain(ctx, pool.Maintenance{Checks: pool.HealthCheck{Interval: 20 * time.Millisecond, Timeout: 2 * time.Second}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	rig.eventually(t, "3 failed checks and the backend down", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_health_checks_failed_total", svcLabels(pool.DefaultService, dead)) >= 3 &&
			opsValue(f, "fulcrum_backend_up", svcLabels(pool.DefaultService, dead)) == 0
	})
	fams = rig.scrape(t)
	checkStates(t, fams, dead, pool.StateDown)
	rig.expect(t, fams, "fulcrum_health_checks_failed_total", svcLabels(pool.DefaultService, live), 0)
	rig.expect(t, fams, "fulcrum_backend_up", svcLabels(pool.DefaultService, live), 1)
}

// fulcrum_build_info names the running build, at 1.
func TestMetricsBuildInfo(t *testing.T) {
	rig := newOpsMetricsRig(t)
	f := rig.scrape(t)["fulcrum_build_info"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("fulcrum_build_info: %v", f)
	}
	m := f.GetMetric()[0]
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("fulcrum_build_info = %v, want 1", v)
	}
	if got := opsLabel(m.GetLabel(), "goversion"); got != runtime.Version() {
		t.Errorf("goversion = %q, want %q", got, runtime.Version())
	}
	for _, l := range []string{"version", "revision"} {
		if opsLabel(m.GetLabel(), l) == "" {
			t.Errorf("fulcrum_build_info has no %s label: %v", l, m.GetLabel())
		}
	}
}
