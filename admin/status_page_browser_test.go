package admin_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsChromium finds Debian's Chromium (apt-get install -y chromium) or skips the test.
func opsChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("Chromium not found (/usr/bin/chromium or chromium on PATH): install it with apt-get install -y chromium to run the browser test")
	return ""
}

// opsBrowser starts a headless Chromium with a fresh profile; it is stopped at cleanup, or
// when the test has run for 90 seconds, so a hung browser cannot hang the suite.
func opsBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := opsChromium(t)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 800),
	)
	// The timeout sits above the allocator: chromedp ties the browser's life to the context
	// of the first Run, so a timeout below would stop the browser after one action.
	bounded, cancelTimeout := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancelTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// opsPage is what the rendered status page shows.
type opsPage struct {
	Header  []string   `json:"header"`
	Rows    [][]string `json:"rows"`
	Summary string     `json:"summary"`
	Lines   int        `json:"lines"`
	Empty   bool       `json:"empty"` // the "no backend registered" note shows
}

const opsReadPage = `({
	header: Array.from(document.querySelectorAll("#backends thead th"), th => th.textContent),
	rows: Array.from(document.querySelectorAll("#backends tbody tr"), tr => Array.from(tr.cells, td => td.textContent)),
	summary: document.getElementById("summary").textContent,
	lines: document.querySelectorAll("#chart polyline").length,
	empty: !document.getElementById("empty").hidden,
})`

// activeByBackend maps each row's Backend cell to its Active cell.
func (p opsPage) activeByBackend() map[string]string {
	out := map[string]string{}
	for _, r := range p.Rows {
		if len(r) == len(opsColumns) {
			out[r[0]] = r[2]
		}
	}
	return out
}

// TestStatusPageInBrowser loads the page in headless Chromium while connections are held and
// checks the table it renders, then that it refreshes itself as a connection ends.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := opsBrowser(t)
	heavy, light := opsEcho(t), opsEcho(t)
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(heavy, 2); err != nil { // weight 2: takes two of three
		t.Fatal(err)
	}
	if err := p.RegisterStatic(light, 1); err != nil {
		t.Fatal(err)
	}
	proxy, srv := opsProxy(t, p, listener.BackendBytes{})
	var held []func() error
	for range 3 {
		held = append(held, opsHold(t, proxy).Close)
	}
	api := &admin.API{Registry: p, Logger: quiet,
		Overview: &admin.Overview{Listen: []string{proxy}, Version: "v1.2.3", Started: time.Now(), Stats: srv.Stats()}}
	base := opsAdmin(t, api)

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", base, err)
	}
	want := map[string]string{heavy.Key(): "2", light.Key(): "1"}
	page := opsWaitPage(t, ctx, "the table to show 2 and 1 active", func(p opsPage) bool {
		return opsMapsEqual(p.activeByBackend(), want)
	})
	if !slices.Equal(page.Header, opsColumns) {
		t.Errorf("rendered header %q, want %q", page.Header, opsColumns)
	}
	if len(page.Rows) != 2 {
		t.Errorf("rendered %d rows, want one per backend (2)", len(page.Rows))
	}
	build := "fulcrum v1.2.3 (revision " + buildinfo.Read().RevisionText() + ")"
	for _, part := range []string{"listening on " + proxy, "2 backends", "3 active", "3 total", build} {
		if !strings.Contains(page.Summary, part) {
			t.Errorf("summary %q lacks %q", page.Summary, part)
		}
	}
	if page.Lines != 2 {
		t.Errorf("chart has %d lines, want one per backend (2)", page.Lines)
	}
	opsScreenshot(t, ctx)

	held[0]()
	held[1]()
	want = map[string]string{}
	for k, n := range opsActive(t, p, 1) {
		want[k] = strconv.FormatInt(n, 10)
	}
	opsWaitPage(t, ctx, "the page to refresh after two connections closed", func(p opsPage) bool {
		return opsMapsEqual(p.activeByBackend(), want)
	})
	if page.Empty {
		t.Error("the no-backend note shows beside backends")
	}

	// Removed backends are listed until their last connection ends, then no row is left.
	for _, a := range []pool.Address{heavy, light} {
		if err := p.Deregister(a.Key()); err != nil {
			t.Fatal(err)
		}
	}
	held[2]()
	opsWaitPage(t, ctx, "an empty table and the no-backend note", func(p opsPage) bool {
		return len(p.Rows) == 0 && p.Empty
	})
}

// opsActive is the pool's count per backend once they add up to sum.
func opsActive(t *testing.T, p *pool.Pool, sum int64) map[string]int64 {
	t.Helper()
	var out map[string]int64
	opsEventually(t, "the pool's counts to add up", func() bool {
		out = map[string]int64{}
		var n int64
		for _, s := range p.Snapshot() {
			out[s.Key] = s.Active
			n += s.Active
		}
		return n == sum
	})
	return out
}

func opsMapsEqual[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func opsWaitPage(t *testing.T, ctx context.Context, what string, cond func(opsPage) bool) opsPage {
	t.Helper()
	return waitPageState(t, ctx, what, opsReadPage, cond)
}

// waitPageState evaluates script in the page until what it returns satisfies cond, or fails
// the test after 30 s.
func waitPageState[P any](t *testing.T, ctx context.Context, what, script string, cond func(P) bool) P {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, err := chromedp.Run(ctx, chromedp.Evaluate[P](script))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		if cond(page) {
			return page
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; the page shows %+v", what, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// opsScreenshot saves a PNG of the page where FULCRUM_SCREENSHOT names a file, for a person
// to look at; tests themselves do not need it.
func opsScreenshot(t *testing.T, ctx context.Context) {
	path := os.Getenv("FULCRUM_SCREENSHOT")
	if path == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Error(err)
	}
}

// opsServicesPage is what the rendered status page shows of services.
type opsServicesPage struct {
	opsPage
	Filter  bool     `json:"filter"`  // the service filter shows
	Options []string `json:"options"` // its values, "" being every service
	Legend  []string `json:"legend"`
}

const opsReadServicesPage = `({
	header: Array.from(document.querySelectorAll("#backends thead th"), th => th.textContent),
	rows: Array.from(document.querySelectorAll("#backends tbody tr"), tr => Array.from(tr.cells, td => td.textContent)),
	summary: document.getElementById("summary").textContent,
	lines: document.querySelectorAll("#chart polyline").length,
	empty: !document.getElementById("empty").hidden,
	filter: !document.getElementById("filter-bar").hidden,
	options: Array.from(document.querySelectorAll("#service-filter option"), o => o.value),
	legend: Array.from(document.querySelectorAll("#legend li"), li => li.textContent),
})`

// rowsByService maps "service backend" to the Active cell, for a table with a Service column.
func (p opsServicesPage) rowsByService() map[string]string {
	out := map[string]string{}
	for _, r := range p.Rows {
		if len(r) == len(opsColumns)+1 {
			out[r[0]+" "+r[1]] = r[3]
		}
	}
	return out
}

func opsWaitServicesPage(t *testing.T, ctx context.Context, what string, cond func(opsServicesPage) bool) opsServicesPage {
	t.Helper()
	return waitPageState(t, ctx, what, opsReadServicesPage, cond)
}

// TestStatusPageServicesInBrowser: with two services sharing a backend address, the table has
// a Service column and a row per (service, backend), and the filter narrows the table, the
// legend and the chart to one service.
func TestStatusPageServicesInBrowser(t *testing.T) {
	ctx := opsBrowser(t)
	shared, own, pools, dbProxy, webProxy := twoServicesHeld(t)
	base := opsAdmin(t, &admin.API{Logger: quiet, Services: []admin.Service{
		{Name: "db", Listen: []string{dbProxy}, Registry: pools["db"]},
		{Name: "web", Listen: []string{webProxy}, Registry: pools["web"]},
	}})
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", base, err)
	}
	want := map[string]string{"db " + shared.Key(): "2", "web " + shared.Key(): "1", "web " + own.Key(): "0"}
	page := opsWaitServicesPage(t, ctx, "a row per service and backend", func(p opsServicesPage) bool {
		return opsMapsEqual(p.rowsByService(), want)
	})
	if wantHeader := append([]string{"Service"}, opsColumns...); !slices.Equal(page.Header, wantHeader) {
		t.Errorf("header %q, want %q", page.Header, wantHeader)
	}
	if !page.Filter || !slices.Equal(page.Options, []string{"", "db", "web"}) {
		t.Errorf("filter shown %v with options %q, want every service, db and web", page.Filter, page.Options)
	}
	if page.Lines != 3 || len(page.Legend) != 3 || !strings.Contains(page.Summary, "2 services") {
		t.Errorf("%d chart lines, legend %q, summary %q; want 3, 3 and 2 services", page.Lines, page.Legend, page.Summary)
	}
	opsScreenshot(t, ctx)

	pick := `(() => { const f = document.getElementById("service-filter"); f.value = "web"; f.dispatchEvent(new Event("change")); return f.value; })()`
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[string](pick)); err != nil || v != "web" {
		t.Fatalf("choose web in the filter: %q, %v", v, err)
	}
	delete(want, "db "+shared.Key())
	page = opsWaitServicesPage(t, ctx, "web's rows alone", func(p opsServicesPage) bool {
		return opsMapsEqual(p.rowsByService(), want)
	})
	if page.Lines != 2 || len(page.Legend) != 2 {
		t.Errorf("with web chosen: %d chart lines, legend %q; want web's two", page.Lines, page.Legend)
	}
	for _, item := range page.Legend {
		if !strings.HasPrefix(item, "web/") {
			t.Errorf("legend item %q is not web's", item)
		}
	}
	// The choice holds across refreshes.
	refreshed := opsRefreshes(t, ctx) + 2
	opsWaitServicesPage(t, ctx, "two more refreshes", func(p opsServicesPage) bool {
		return opsRefreshes(t, ctx) >= refreshed && opsMapsEqual(p.rowsByService(), want)
	})
}

// opsRefreshes is how many times the page has redrawn from a fresh status.
func opsRefreshes(t *testing.T, ctx context.Context) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.refreshes || "0"`))
	if err != nil {
		t.Fatal(err)
	}
	i, err := strconv.Atoi(n)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// registryHealth is a shared registry whose health the test sets.
type registryHealth struct{ down atomic.Bool }

func (*registryHealth) Kind() string    { return "etcd" }
func (r *registryHealth) Healthy() bool { return !r.down.Load() }

// TestStatusPageShowsRegistryHealth: with a shared registry, the summary names it, and says so
// when it stops answering; the in-memory registry is not mentioned.
func TestStatusPageShowsRegistryHealth(t *testing.T) {
	ctx := opsBrowser(t)
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(opsEcho(t), 1); err != nil {
		t.Fatal(err)
	}
	reg := &registryHealth{}
	shared := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Shared: reg})
	if err := chromedp.Do(ctx, chromedp.Navigate(shared+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", shared, err)
	}
	opsWaitPage(t, ctx, "the summary to name the etcd registry", func(p opsPage) bool {
		return strings.Contains(p.Summary, "registry etcd") && !strings.Contains(p.Summary, "unreachable")
	})
	reg.down.Store(true)
	opsWaitPage(t, ctx, "the summary to say etcd is unreachable", func(p opsPage) bool {
		return strings.Contains(p.Summary, "registry etcd unreachable")
	})

	local := opsAdmin(t, &admin.API{Registry: p, Logger: quiet})
	if err := chromedp.Do(ctx, chromedp.Navigate(local+"/")); err != nil {
		t.Fatalf("navigate to %s: %v", local, err)
	}
	page := opsWaitPage(t, ctx, "the page to render", func(p opsPage) bool { return strings.Contains(p.Summary, "1 backend") })
	if strings.Contains(page.Summary, "registry") {
		t.Errorf("summary %q mentions the in-memory registry", page.Summary)
	}
}
