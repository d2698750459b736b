package harness

import (
	"fmt"
	"image/color"
	"io"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// peerColors gives each peer a fixed colour, in Config.Peers order.
var peerColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, // grey
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, // brown
	color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, // pink
	color.RGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff}, // olive
}

// panel is one chart of the grid: a metric at one concurrency.
type panel struct {
	title string
	value func(Summary) float64
	label func(float64) string
	ticks plot.Ticker
}

// WriteChart draws the results as a PNG: a grid with calls/s in the top
// row and p99 latency in the bottom one, a column per concurrency, a bar
// per peer, each panel on its own scale.
func (r *Report) WriteChart(w io.Writer) error {
	rows := []panel{
		{"calls/s (higher is better)", func(s Summary) float64 { return s.CallsPerSec }, group, groupedTicks{}},
		{"p99 latency, ms (lower is better)", func(s Summary) float64 { return s.P99ms },
			func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }, plot.DefaultTicks{}},
	}
	cols := len(r.Config.Concurrency)
	grid := make([][]*plot.Plot, len(rows))
	for i, row := range rows {
		for _, c := range r.Config.Concurrency {
			p, err := r.barPlot(row, c)
			if err != nil {
				return err
			}
			grid[i] = append(grid[i], p)
		}
	}

	width := vg.Length(max(1, cols)) * 15 * vg.Centimeter
	const height, titleH = 19 * vg.Centimeter, vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	sty := text.Style{Color: color.Black, Font: plot.DefaultFont, XAlign: draw.XCenter, YAlign: draw.YCenter, Handler: plot.DefaultTextHandler}
	sty.Font.Size = vg.Points(11)
	dc.FillText(sty, vg.Point{X: width / 2, Y: height - titleH/2}, r.chartTitle())
	body := dc
	body.Max.Y -= titleH
	tiles := draw.Tiles{Rows: len(rows), Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter / 2,
		PadLeft: 3 * vg.Millimeter, PadRight: 5 * vg.Millimeter, PadBottom: 3 * vg.Millimeter}
	canvases := plot.Align(grid, tiles, body)
	for i := range grid {
		for j := range grid[i] {
			grid[i][j].Draw(canvases[i][j])
		}
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

func (r *Report) chartTitle() string {
	date := r.Machine.Date[:min(10, len(r.Machine.Date))]
	return fmt.Sprintf("shoal and its peers on the rpcx-benchmark workload (a plain struct; -gen: generated code), one connection each, medians of %d rounds — %s, %d cores, %s, %s",
		r.Config.Rounds, r.Machine.CPU, r.Machine.Cores, r.Machine.Go, date)
}

// barPlot draws one panel: the metric for every peer at concurrency c.
func (r *Report) barPlot(pn panel, c int) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, c=%d", pn.title, c)
	p.Y.Min = 0
	p.Y.Tick.Marker = pn.ticks
	peers := r.Config.Peers
	names := make([]string, len(peers))
	ymax := 0.0
	for i, name := range peers {
		names[i] = name
		if name == Ceiling {
			names[i] = "raw (ceiling)"
		}
		v := 0.0
		if s := r.find(name, c); s != nil {
			v = max(pn.value(*s), 0)
		}
		ymax = max(ymax, v)
		bars, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(34))
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		bars.XMin = float64(i)
		bars.LineStyle.Width = 0
		bars.Color = peerColors[i%len(peerColors)]
		lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(i), Y: v}}, Labels: []string{pn.label(v)}})
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		for k := range lbl.TextStyle {
			lbl.TextStyle[k].XAlign = draw.XCenter
			lbl.TextStyle[k].Font.Size = vg.Points(8)
		}
		lbl.Offset = vg.Point{Y: vg.Points(3)}
		p.Add(bars, lbl)
	}
	p.Y.Max = ymax * 1.15 // room for the labels
	if ymax == 0 {
		p.Y.Max = 1
	}
	p.NominalX(names...)
	return p, nil
}

// groupedTicks labels the Y axis like the bars: 400000 → "400 000".
type groupedTicks struct{}

// Ticks implements plot.Ticker.
func (groupedTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = group(ticks[i].Value)
		}
	}
	return ticks
}
