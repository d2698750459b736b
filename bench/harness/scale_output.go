package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WriteTable writes the scale report for people: the machine, then one
// Markdown table per curve.
func (r *ScaleReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.Machine.String())
	b.WriteString("\n")
	for _, c := range []struct{ curve, title string }{
		{CurveSize, fmt.Sprintf("Payload size (Blob.Echo, the bytes each way; one connection, %d callers)", r.Config.SizeCallers)},
		{CurveSizeS2, fmt.Sprintf("Payload size with consumer.WithCompression (s2 both ways; one connection, %d callers)", r.Config.SizeCallers)},
		{CurveCallers, "Callers on one connection (Hello.Say, the plain struct)"},
		{CurvePool, fmt.Sprintf("Callers on a Pool with WithConnsPerAddr(%d) (Hello.Say)", r.Config.Conns)},
		{CurveInstances, fmt.Sprintf("ClientProxy over N instances (static registry, default balancer; %d callers; Hello.Say)", r.Config.ProxyCallers)},
	} {
		t := r.curveTable(c.curve)
		if len(t.rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n\n%s", c.title, t.String())
	}
	for _, p := range r.Points {
		if p.Errors > 0 {
			fmt.Fprintf(&b, "\nWARNING: %s=%d: %d failed calls (not counted); see the rounds in the JSON.\n", p.Curve, p.X, p.Errors)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *ScaleReport) curveTable(curve string) table {
	head := map[string]string{CurveSize: "bytes", CurveSizeS2: "bytes", CurveCallers: "callers", CurvePool: "callers", CurveInstances: "instances"}[curve]
	t := table{
		head:  []string{head, "calls/s", "p50 ms", "p99 ms", "allocs/call", "B/call", "client µs/call", "server µs/call"},
		right: []bool{true, true, true, true, true, true, true, true},
	}
	sized := curve == CurveSize || curve == CurveSizeS2
	if sized {
		t.head = append(t.head, "MB/s", "CPU ns/byte")
		t.right = append(t.right, true, true)
	}
	for _, p := range r.Points {
		if p.Curve != curve {
			continue
		}
		row := []string{group(float64(p.X)), group(p.CallsPerSec), fixed(p.P50ms, 2), fixed(p.P99ms, 2),
			fixed(p.AllocsPerCall, 1), group(p.BytesPerCall), fixed(p.ClientCPUusPerCall, 1), fixed(p.ServerCPUusPerCall, 1)}
		if sized {
			row = append(row, fixed(p.MBPerSec, 1), fixed(p.CPUnsPerByte, 2))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// WriteFiles writes the report as JSON to jsonPath and, with chart, the PNG
// chart next to it; it returns the chart's path ("" when none).
func (r *ScaleReport) WriteFiles(jsonPath string, chart bool) (string, error) {
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode the report: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write the report: %w", err)
	}
	if !chart {
		return "", nil
	}
	pngPath := strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath)) + ".png"
	var buf bytes.Buffer
	if err := r.WriteChart(&buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(pngPath, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write the chart: %w", err)
	}
	return pngPath, nil
}

// series is one line of a scale panel: a curve's metric against X.
type series struct {
	name  string
	curve string
	value func(ScalePoint) float64
}

// WriteChart draws the curves as a PNG: a 2×3 grid of line charts on a
// logarithmic X axis.
func (r *ScaleReport) WriteChart(w io.Writer) error {
	cpu := func(p ScalePoint) float64 { return p.ClientCPUusPerCall + p.ServerCPUusPerCall }
	cps := func(p ScalePoint) float64 { return p.CallsPerSec }
	mbps := func(p ScalePoint) float64 { return p.MBPerSec }
	nsb := func(p ScalePoint) float64 { return p.CPUnsPerByte }
	pool := fmt.Sprintf("pool of %d", r.Config.Conns)
	panels := []struct {
		title, x string
		logY     bool
		lines    []series
	}{
		{"payload MB/s (each way)", "payload bytes", false, []series{{"1 connection", CurveSize, mbps}, {"with s2", CurveSizeS2, mbps}}},
		{"CPU ns per payload byte, client + server (log)", "payload bytes", true, []series{{"1 connection", CurveSize, nsb}, {"with s2", CurveSizeS2, nsb}}},
		{"calls/s by payload size (log)", "payload bytes", true, []series{{"1 connection", CurveSize, cps}, {"with s2", CurveSizeS2, cps}}},
		{"calls/s by callers", "callers", false, []series{{"1 connection", CurveCallers, cps}, {pool, CurvePool, cps}}},
		{"CPU µs per call, client + server, by callers", "callers", false, []series{{"1 connection", CurveCallers, cpu}, {pool, CurvePool, cpu}}},
		{"ClientProxy: calls/s and CPU µs per call ×1000", "instances", false, []series{
			{"calls/s", CurveInstances, cps},
			{"CPU µs/call ×1000, client + server", CurveInstances, func(p ScalePoint) float64 { return 1000 * cpu(p) }}}},
	}
	const cols, rows = 3, 2
	grid := make([][]*plot.Plot, rows)
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = pn.x
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Legend.Top = true
		for k, s := range pn.lines {
			var xys plotter.XYs
			for _, pt := range r.Points {
				v := s.value(pt)
				if pt.Curve == s.curve && pt.X > 0 && (v > 0 || !pn.logY) {
					xys = append(xys, plotter.XY{X: float64(pt.X), Y: max(v, 0)})
				}
			}
			if len(xys) == 0 {
				continue
			}
			if pn.logY {
				p.Y.Min = xys[0].Y
				for _, xy := range xys {
					p.Y.Min = min(p.Y.Min, xy.Y)
				}
				p.Y.Min /= 2
			}
			line, dots, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("chart: %w", err)
			}
			line.Color = peerColors[k%len(peerColors)]
			line.Width = vg.Points(1.5)
			dots.Color = line.Color
			p.Add(line, dots)
			if len(pn.lines) > 1 {
				p.Legend.Add(s.name, line)
			}
		}
		if pn.logY && p.Y.Max > p.Y.Min && p.Y.Min > 0 {
			// A logarithmic scale only over positive values (a failed
			// point may be 0, and gonum panics on one).
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		grid[i/cols] = append(grid[i/cols], p)
	}

	width, height := vg.Length(cols)*13*vg.Centimeter, vg.Length(rows)*10*vg.Centimeter+vg.Centimeter
	const titleH = vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	sty := text.Style{Color: color.Black, Font: plot.DefaultFont, XAlign: draw.XCenter, YAlign: draw.YCenter, Handler: plot.DefaultTextHandler}
	sty.Font.Size = vg.Points(11)
	date := r.Machine.Date[:min(10, len(r.Machine.Date))]
	dc.FillText(sty, vg.Point{X: width / 2, Y: height - titleH/2}, fmt.Sprintf(
		"shoal at scale, default options, medians of %d rounds of %ss — %s, %d cores, %s, %s",
		r.Config.Rounds, strconv.FormatFloat(r.Config.DurationSec, 'g', -1, 64), r.Machine.CPU, r.Machine.Cores, r.Machine.Go, date))
	body := dc
	body.Max.Y -= titleH
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter / 2,
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
