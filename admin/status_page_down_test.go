package admin_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsDownPage is what the rendered page shows of the table, and whether the service filter
// is displayed (not only flagged hidden: a stylesheet can override the attribute).
type opsDownPage struct {
	opsPage
	FilterDisplayed bool `json:"filterDisplayed"`
}

const opsReadDownPage = `({
	header: Array.from(document.querySelectorAll("#backends thead th"), th => th.textContent),
	rows: Array.from(document.querySelectorAll("#backends tbody tr"), tr => Array.from(tr.cells, td => td.textContent)),
	summary: document.getElementById("summary").textContent,
	lines: document.querySelectorAll("#chart polyline").length,
	empty: !document.getElementById("empty").hidden,
	filterDisplayed: getComputedStyle(document.getElementById("filter-bar")).display !== "none",
})`

// rowOf is the rendered row of a backend, by its Backend cell.
func (p opsDownPage) rowOf(key string) []string {
	for _, r := range p.Rows {
		if len(r) > 0 && r[0] == key {
			return r
		}
	}
	return nil
}

// TestStatusPageShowsWhyDown: a backend whose dial failed shows its last error in a Last error
// column; a static backend shows no heartbeat age, even when down; and with one service the
// service filter is not displayed.
func TestStatusPageShowsWhyDown(t *testing.T) {
	ctx := opsBrowser(t)
	dead, live := opsDeadAddress(t), opsEcho(t)
	rig := newOpsMetricsRig(t, dead)
	if _, err := rig.pool.Register(live, 1); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(rig.admin+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", rig.admin, err)
	}
	page := waitPageState(t, ctx, "two rows, no error yet", opsReadDownPage, func(p opsDownPage) bool { return len(p.Rows) == 2 })
	if !slices.Equal(page.Header, opsColumns) {
		t.Errorf("header without errors %q, want %q", page.Header, opsColumns)
	}
	if page.FilterDisplayed {
		t.Error("the service filter is displayed with one service")
	}
	if err := rig.pool.Deregister(live.Key()); err != nil { // the next client goes to dead
		t.Fatal(err)
	}
	opsRefused(t, rig.proxy)
	if _, err := rig.pool.Register(live, 1); err != nil {
		t.Fatal(err)
	}
	page = waitPageState(t, ctx, "dead down with its error", opsReadDownPage, func(p opsDownPage) bool {
		r := p.rowOf(dead.Key())
		return len(r) == len(opsColumns)+1 && r[1] == "down"
	})
	if want := append(slices.Clone(opsColumns), "Last error"); !slices.Equal(page.Header, want) {
		t.Errorf("header %q, want %q", page.Header, want)
	}
	r := page.rowOf(dead.Key())
	if !strings.Contains(r[8], "refused") || !strings.Contains(r[8], "ago") {
		t.Errorf("last error cell %q, want the refused dial and its age", r[8])
	}
	if r[6] != "—" {
		t.Errorf("static backend's heartbeat age %q, want —", r[6])
	}
	if l := page.rowOf(live.Key()); len(l) != 9 || l[8] != "—" || l[6] == "—" {
		t.Errorf("live backend row %q: want an age and no error", l)
	}
	opsScreenshot(t, ctx)
}

// TestStatusPageSharedRegistryAges: with a shared registry a heartbeat backend's age is not
// shown, since its lease, renewed through any balancer, keeps it.
func TestStatusPageSharedRegistryAges(t *testing.T) {
	ctx := opsBrowser(t)
	p := &pool.Pool{Logger: quiet}
	dyn := opsEcho(t)
	if _, err := p.Register(dyn, 1); err != nil {
		t.Fatal(err)
	}
	base := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Shared: &registryHealth{}})
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", base, err)
	}
	page := waitPageState(t, ctx, "one row", opsReadDownPage, func(p opsDownPage) bool { return len(p.Rows) == 1 })
	if r := page.Rows[0]; r[1] != "up" || r[6] != "—" {
		t.Errorf("row %q: want up with no heartbeat age under a shared registry", r)
	}
}
