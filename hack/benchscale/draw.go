package main

import (
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	grey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
)

// drawTimeline writes four stacked panels that share the time axis: calls per second; callers;
// ready and desired pods; p50 and p99 latency.
func drawTimeline(path, title string, rows []row) error {
	xy := func(f func(row) float64) plotter.XYs {
		pts := make(plotter.XYs, len(rows))
		for i, r := range rows {
			pts[i] = plotter.XY{X: float64(r.t), Y: f(r)}
		}
		return pts
	}
	panel := func(name, ylabel string, lines ...any) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = name
		p.Y.Label.Text = ylabel
		p.X.Label.Text = "seconds"
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		p.Legend.Left = true
		for i := 0; i < len(lines); i += 3 {
			l, err := plotter.NewLine(lines[i].(plotter.XYs))
			if err != nil {
				return nil, err
			}
			l.Color = lines[i+1].(color.Color)
			l.Width = vg.Points(1.5)
			if l.Color == orange && len(lines) == 6 { // desired pods: dashed over ready pods, so both show
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(lines[i+2].(string), l)
		}
		return p, nil
	}
	load, err := panel(title, "calls/s",
		xy(func(r row) float64 { return float64(r.rps) }), blue, "calls answered per second")
	if err != nil {
		return err
	}
	callers, err := panel("callers (each sends its next call when the last is answered)", "callers",
		xy(func(r row) float64 { return float64(r.callers) }), grey, "callers")
	if err != nil {
		return err
	}
	pods, err := panel("pods", "pods",
		xy(func(r row) float64 { return float64(r.ready) }), green, "ready pods",
		xy(func(r row) float64 { return float64(r.desired) }), orange, "desired pods (autoscaler)")
	if err != nil {
		return err
	}
	lat, err := panel("latency of the calls that ended in each second", "ms",
		xy(func(r row) float64 { return r.p50 }), blue, "p50",
		xy(func(r row) float64 { return r.p99 }), orange, "p99")
	if err != nil {
		return err
	}
	plots := [][]*plot.Plot{{load}, {callers}, {pods}, {lat}}
	// One time axis for all three.
	xmax := float64(len(rows))
	for _, p := range []*plot.Plot{load, callers, pods, lat} {
		p.X.Min, p.X.Max = 0, xmax
	}
	img := vgimg.New(10*vg.Inch, 11*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 4, Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter, PadTop: 2 * vg.Millimeter,
		PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
