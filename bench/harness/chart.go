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
}

// WriteChart draws the results as a PNG: calls/s on the left and p99
// latency on the right, one group of bars per concurrency, one bar per peer.
func (r *Report) WriteChart(w io.Writer) error {
	calls, err := r.barPlot("calls/s (higher is better)", func(s Summary) float64 { return s.CallsPerSec }, group)
	if err != nil {
		return err
	}
	p99, err := r.barPlot("p99 latency, ms (lower is better)", func(s Summary) float64 { return s.P99ms },
		func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) })
	if err != nil {
		return err
	}
	const width, height = 30 * vg.Centimeter, 12 * vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	title := dc
	title.Min.Y = title.Max.Y - vg.Centimeter
	sty := text.Style{Color: color.Black, Font: plot.DefaultFont, XAlign: draw.XCenter, YAlign: draw.YCenter}
	sty.Font.Size = vg.Points(11)
	sty.Handler = plot.DefaultTextHandler
	title.FillText(sty, vg.Point{X: (title.Min.X + title.Max.X) / 2, Y: title.Min.Y + vg.Centimeter/2},
		fmt.Sprintf("rpcx-benchmark workload, one connection per peer — %s, %d cores, %s", r.Machine.CPU, r.Machine.Cores, r.Machine.Date[:min(10, len(r.Machine.Date))]))
	body := dc
	body.Max.Y -= vg.Centimeter
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3}
	canvases := plot.Align([][]*plot.Plot{{calls, p99}}, tiles, body)
	calls.Draw(canvases[0][0])
	p99.Draw(canvases[0][1])
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// barPlot makes one grouped bar chart of the metric value.
func (r *Report) barPlot(title string, value func(Summary) float64, label func(float64) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	names := make([]string, len(r.Config.Concurrency))
	for i, c := range r.Config.Concurrency {
		names[i] = "c=" + strconv.Itoa(c)
	}
	peers := r.Config.Peers
	barWidth := vg.Points(float64(min(30, 240/max(1, len(peers)))))
	ymax := 0.0
	for i, name := range peers {
		vals := make(plotter.Values, len(r.Config.Concurrency))
		xys := make(plotter.XYs, len(r.Config.Concurrency))
		labels := make([]string, len(r.Config.Concurrency))
		for j, c := range r.Config.Concurrency {
			if s := r.find(name, c); s != nil {
				vals[j] = max(value(*s), 0)
			}
			xys[j] = plotter.XY{X: float64(j), Y: vals[j]}
			labels[j] = label(vals[j])
			ymax = max(ymax, vals[j])
		}
		bars, err := plotter.NewBarChart(vals, barWidth)
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		bars.LineStyle.Width = 0
		bars.Color = peerColors[i%len(peerColors)]
		bars.Offset = vg.Length(float64(i)-float64(len(peers)-1)/2) * barWidth
		lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		for k := range lbl.TextStyle {
			lbl.TextStyle[k].XAlign = draw.XCenter
			lbl.TextStyle[k].Font.Size = vg.Points(6.5)
			lbl.TextStyle[k].Rotation = 1.5708 // vertical, reading upwards
			lbl.TextStyle[k].YAlign = draw.YCenter
			lbl.TextStyle[k].XAlign = draw.XLeft
		}
		lbl.Offset = vg.Point{X: bars.Offset, Y: vg.Points(2)}
		p.Add(bars, lbl)
		legend := name
		if name == Ceiling {
			legend = "raw (ceiling)"
		}
		p.Legend.Add(legend, bars)
	}
	p.Y.Max = ymax * 1.35 // room for the labels and the legend
	p.Y.Tick.Marker = groupedTicks{}
	p.NominalX(names...)
	return p, nil
}

// groupedTicks labels the Y axis like the bars: 400000 → "400 000".
type groupedTicks struct{}

// Ticks implements plot.Ticker.
func (groupedTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" && ticks[i].Value >= 1000 {
			ticks[i].Label = group(ticks[i].Value)
		}
	}
	return ticks
}
