package admin_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// TestStatusPageShowsSockmapCounts: the summary names the data plane and, on the sockmap
// plane, how many connections are in the kernel and on the relay, and how many were
// promoted; on another plane it says nothing of the kernel.
func TestStatusPageShowsSockmapCounts(t *testing.T) {
	ctx := opsBrowser(t)
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(opsEcho(t), 1); err != nil {
		t.Fatal(err)
	}
	for range 3 { // three connections counted on the backend
		b, err := p.Acquire(netip.Addr{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Release(b) })
	}
	smap := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Overview: &admin.Overview{DataPlane: "sockmap",
		Sockmap: func() listener.SockmapStats { return listener.SockmapStats{InKernel: 2, Promoted: 1234, MapEntries: 4} }}})
	if err := chromedp.Do(ctx, chromedp.Navigate(smap+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", smap, err)
	}
	page := opsWaitPage(t, ctx, "the summary to show the sockmap counts", func(p opsPage) bool {
		return strings.Contains(p.Summary, "2 in the kernel, 1 on the relay (1,234 promoted)")
	})
	if !strings.Contains(page.Summary, "data plane sockmap") {
		t.Errorf("summary %q does not name the data plane", page.Summary)
	}

	epoll := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Overview: &admin.Overview{DataPlane: "epoll"}})
	if err := chromedp.Do(ctx, chromedp.Navigate(epoll+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", epoll, err)
	}
	page = opsWaitPage(t, ctx, "the page to render", func(p opsPage) bool { return strings.Contains(p.Summary, "data plane epoll") })
	if strings.Contains(page.Summary, "kernel") {
		t.Errorf("summary %q speaks of the kernel on the epoll plane", page.Summary)
	}
}
