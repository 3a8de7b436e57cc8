// Package chart draws a comparison's report as grouped bars, one group per key metric and
// one bar per peer, relative to HAProxy. It is its own package so that only the chart command
// (cmd/fulcrum-chart) links the plotting library: the balancer's binary does not.
//
//	rep, err := bench.ReadReport("bench/RESULTS.json")
//	...
//	err = chart.Write(rep, "bench/RESULTS.png")
package chart

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/fulcrumlb/fulcrum/bench"
)

// metrics are the bars of the chart, one group each.
var metrics = []struct {
	scenario, metric, label string
}{
	{bench.Throughput, "upload_mb_s", "upload MB/s ↑"},
	{bench.Throughput, "download_mb_s", "download MB/s ↑"},
	{bench.Connrate, "conns_per_s", "conn/s ↑"},
	{bench.Connrate, "p99_us", "conn p99 ↓"},
	{bench.Latency, "requests_per_s", "ping-pong req/s ↑"},
	{bench.Latency, "p99_us", "ping-pong p99 ↓"},
	{bench.Latency1, "requests_per_s", "1-conn req/s ↑"},
	{bench.Connrate, "cpu_us_per_conn", "CPU/conn ↓"},
	{bench.Latency, "cpu_us_per_req", "CPU/req ↓"},
	{bench.Idle, "rss_per_conn_kib", "idle KiB/conn ↓"},
}

var colors = []color.Color{
	color.RGBA{0x99, 0x99, 0x99, 0xff}, color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

// Write draws every peer's medians relative to HAProxy's (or to direct's when HAProxy did
// not run) as grouped bars, and saves it to path (.png or .svg, by its extension).
func Write(r *bench.Report, path string) error {
	ref := bench.HAProxy
	if !r.Has(ref) {
		ref = bench.Direct
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("median of %d rounds, relative to %s (= 1)", r.Rounds, ref)
	p.Y.Label.Text = "× " + ref
	p.Y.Min = 0
	names := make([]string, len(metrics))
	for i, c := range metrics {
		names[i] = c.label
	}
	p.NominalX(names...)
	width := vg.Points(14)
	top := 1.0
	for i, t := range r.Targets {
		vals := make(plotter.Values, len(metrics))
		for j, c := range metrics {
			vals[j], _ = r.Ratio(c.scenario, c.metric, t, ref) // missing: a zero bar
			top = max(top, vals[j])
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		bars.Color = colors[i%len(colors)]
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(r.Targets)-1)/2)
		p.Add(bars)
		p.Legend.Add(t, bars)
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Y.Max = top * 1.3 // room for the legend above the tallest bar
	if err := p.Save(30*vg.Centimeter, 12*vg.Centimeter, path); err != nil {
		return fmt.Errorf("save chart %s: %w", path, err)
	}
	return nil
}
