package admin

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// TestSplitActive: kernel and relay always add up to the active total, and neither goes
// negative, whatever the loops' count read beside it.
func TestSplitActive(t *testing.T) {
	for _, c := range []struct {
		name     string
		inKernel int
		active   int64
		want     sockmapCounts
	}{
		{"none", 0, 0, sockmapCounts{}},
		{"all on the relay", 0, 3, sockmapCounts{Relay: 3}},
		{"some in the kernel", 2, 5, sockmapCounts{Kernel: 2, Relay: 3}},
		{"all in the kernel", 5, 5, sockmapCounts{Kernel: 5}},
		{"kernel read after a pick and promotion", 6, 5, sockmapCounts{Kernel: 5}},
		{"kernel read after connections ended", 2, 0, sockmapCounts{}},
		{"negative kernel count", -1, 2, sockmapCounts{Relay: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.want.Promoted = 9
			got := splitActive(listener.SockmapStats{InKernel: c.inKernel, Promoted: 9}, c.active)
			if got != c.want {
				t.Errorf("splitActive(%d in the kernel, %d active) = %+v, want %+v", c.inKernel, c.active, got, c.want)
			}
		})
	}
}

// TestStatusSockmapObject: with Overview.Sockmap the status carries "sockmap", whose kernel
// and relay add up to the services' active total (the whole process's, with ?service= too);
// without it there is no such field; /metrics likewise.
func TestStatusSockmapObject(t *testing.T) {
	a, pools := newServicesAPI(t, nil)
	for name, n := range map[string]int{"db": 2, "web": 3} {
		p := pools[name]
		if err := p.RegisterStatic(pool.Address{Host: "10.0.0.1", Port: 80}, 1); err != nil {
			t.Fatal(err)
		}
		for range n {
			b, err := p.Acquire(netip.Addr{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Release(b) })
		}
	}
	m, err := NewServiceMetrics(a.Services)
	if err != nil {
		t.Fatal(err)
	}
	a.Metrics = m
	a.Overview = &Overview{DataPlane: "epoll"}
	h := a.Handler()
	for _, target := range []string{"/upstream/status", "/upstream/status?service=db"} {
		if w := (req{target: target}).do(t, h); strings.Contains(w.Body.String(), `"sockmap"`) {
			t.Errorf("%s without Overview.Sockmap: %s", target, w.Body)
		}
	}
	if w := (req{target: "/metrics"}).do(t, h); strings.Contains(w.Body.String(), "fulcrum_sockmap_") {
		t.Errorf("metrics without Overview.Sockmap have sockmap series")
	}

	a.Overview = &Overview{DataPlane: "sockmap", Sockmap: func() listener.SockmapStats {
		return listener.SockmapStats{InKernel: 4, Promoted: 11, MapEntries: 8, Paused: 2}
	}}
	for _, target := range []string{"/upstream/status", "/upstream/status?service=db"} {
		var reply struct {
			Sockmap *sockmapCounts `json:"sockmap"`
		}
		w := (req{target: target}).do(t, h)
		if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil || reply.Sockmap == nil {
			t.Fatalf("%s: no sockmap object (%v): %s", target, err, w.Body)
		}
		if want := (sockmapCounts{Kernel: 4, Relay: 1, Promoted: 11, Paused: 2}); *reply.Sockmap != want {
			t.Errorf("%s: sockmap %+v, want %+v (5 active)", target, *reply.Sockmap, want)
		}
	}
	body := (req{target: "/metrics"}).do(t, h).Body.String()
	for _, line := range []string{
		`fulcrum_sockmap_connections{where="kernel"} 4`,
		`fulcrum_sockmap_connections{where="relay"} 1`,
		`fulcrum_sockmap_promotions_total 11`,
		`fulcrum_sockmap_pauses_total 2`,
		"# TYPE fulcrum_sockmap_pauses_total counter",
		"# TYPE fulcrum_sockmap_connections gauge",
		"# TYPE fulcrum_sockmap_promotions_total counter",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}
