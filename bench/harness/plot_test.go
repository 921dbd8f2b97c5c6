package harness

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/plotter"
)

// decodePNG proves the file is a PNG of a plausible size.
func decodePNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 300)
	require.Greater(t, img.Bounds().Dy(), 200)
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	cdf := filepath.Join(dir, "cdf.png")
	require.NoError(t, PlotCDF(cdf, "cdf", []Series{{Name: "a", Values: []float64{1, 2, 3}}, {Name: "empty"}, {Name: "b", Values: []float64{10, 0}}}))
	decodePNG(t, cdf)

	bars := filepath.Join(dir, "bars.png")
	require.NoError(t, PlotBarPanels(bars, []BarPanel{
		{Title: "req/s", Unit: "req/s", Bars: []Bar{{Name: "x", Median: 2, Min: 1, Max: 3}, {Name: "y", Median: 4, Min: 4, Max: 4}}},
		{Title: "p99", Unit: "ms", Bars: []Bar{{Name: "x", Median: 1, Min: 1, Max: 1}}},
	}))
	decodePNG(t, bars)

	lines := filepath.Join(dir, "lines.png")
	require.NoError(t, PlotLines(lines, "t", "s", "n", []Line{
		{Name: "a", XYs: plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 3}}, Step: true},
		{Name: "none"},
	}))
	decodePNG(t, lines)
}
