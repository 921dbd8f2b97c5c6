package harness

import (
	"fmt"
	"image/color"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// palette is a colour-blind-safe set (Okabe–Ito), in series order.
var palette = []color.Color{
	color.RGBA{0, 114, 178, 255},   // blue
	color.RGBA{213, 94, 0, 255},    // vermillion
	color.RGBA{0, 158, 115, 255},   // green
	color.RGBA{204, 121, 167, 255}, // purple
	color.RGBA{230, 159, 0, 255},   // orange
	color.RGBA{86, 180, 233, 255},  // sky
	color.RGBA{0, 0, 0, 255},       // black
}

// Series is one named sample for a CDF.
type Series struct {
	Name   string
	Values []float64 // milliseconds
}

// PlotCDF draws the empirical CDFs of the series on a log time axis.
func PlotCDF(path, title string, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time to first byte / HTTP ready (ms, log scale)"
	p.Y.Label.Text = "fraction of starts"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	// Room above the curves for the legend; ticks stop at 1.
	p.Y.Min, p.Y.Max = 0, 1.45
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"}, {Value: 0.5, Label: "0.5"}, {Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"}})
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	for i, s := range series {
		if len(s.Values) == 0 {
			continue
		}
		v := append([]float64(nil), s.Values...)
		sort.Float64s(v)
		xys := make(plotter.XYs, 0, len(v)+1)
		for j, x := range v {
			if x <= 0 {
				x = 1e-3
			}
			if j == 0 {
				xys = append(xys, plotter.XY{X: x, Y: 0})
			}
			xys = append(xys, plotter.XY{X: x, Y: float64(j+1) / float64(len(v))})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.StepStyle = plotter.PreStep
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (n=%d, p50 %.1f ms)", s.Name, len(v), Percentile(v, 50)), l)
	}
	return p.Save(20*vg.Centimeter, 12*vg.Centimeter, path)
}

// Bar is one bar with its range over runs.
type Bar struct {
	Name             string
	Median, Min, Max float64
}

// PlotBarPanels draws side-by-side bar charts (one per panel) with min–max
// error bars, into one PNG.
func PlotBarPanels(path string, panels []BarPanel) error {
	plots := make([][]*plot.Plot, 1)
	for _, panel := range panels {
		p := plot.New()
		p.Title.Text = panel.Title
		p.Y.Label.Text = panel.Unit
		p.Add(plotter.NewGrid())
		vals := make(plotter.Values, len(panel.Bars))
		names := make([]string, len(panel.Bars))
		errs := errBars{}
		for i, b := range panel.Bars {
			vals[i] = b.Median
			names[i] = b.Name
			errs.XYs = append(errs.XYs, plotter.XY{X: float64(i), Y: b.Median})
			errs.YErrors = append(errs.YErrors, struct{ Low, High float64 }{b.Median - b.Min, b.Max - b.Median})
		}
		bc, err := plotter.NewBarChart(vals, vg.Points(28))
		if err != nil {
			return err
		}
		bc.Color = palette[0]
		bc.LineStyle.Width = 0
		p.Add(bc)
		eb, err := plotter.NewYErrorBars(errs)
		if err != nil {
			return err
		}
		p.Add(eb)
		p.NominalX(names...)
		p.Y.Min = 0
		plots[0] = append(plots[0], p)
	}
	w, h := vg.Length(len(panels))*11*vg.Centimeter, 10*vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots[0] {
		plots[0][j].Draw(canvases[0][j])
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

// BarPanel is one panel of PlotBarPanels.
type BarPanel struct {
	Title string
	Unit  string
	Bars  []Bar
}

type errBars struct {
	plotter.XYs
	YErrors []struct{ Low, High float64 }
}

func (e errBars) YError(i int) (float64, float64) { return e.YErrors[i].Low, e.YErrors[i].High }

// Line is one named line of a time plot.
type Line struct {
	Name string
	XYs  plotter.XYs
	Step bool
}

// PlotLines draws lines over time.
func PlotLines(path, title, xLabel, yLabel string, lines []Line) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	top := 0.0
	for i, ln := range lines {
		if len(ln.XYs) == 0 {
			continue
		}
		for _, xy := range ln.XYs {
			top = max(top, xy.Y)
		}
		l, err := plotter.NewLine(ln.XYs)
		if err != nil {
			return err
		}
		if ln.Step {
			l.StepStyle = plotter.PostStep
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		if i > 1 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(ln.Name, l)
	}
	// Room above the lines for the legend.
	p.Y.Min, p.Y.Max = 0, max(1, top*1.35)
	return p.Save(22*vg.Centimeter, 12*vg.Centimeter, path)
}
