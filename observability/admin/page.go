package admin

import (
	"cmp"
	"html/template"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// view is what the page template draws: plain values, gathered once per
// request.
type view struct {
	Now        time.Time
	Uptime     time.Duration
	Host       string
	PID        int
	Goroutines int
	GoVersion  string

	Server     *provider.Snapshot
	Methods    []methodRow
	ServerConn int64 // connections the stats handler saw open
	Proxies    []proxyView
	Clients    []methodRow // calls of plain Clients (no proxy): by address and method
	Events     []eventRow
}

// methodRow is one method's counts.
type methodRow struct {
	Name          string
	Calls, Errors uint64
	P50, P90, P99 time.Duration
}

type proxyView struct {
	consumer.ProxySnapshot
	Instances []instanceRow
	Calls     []methodRow
}

type instanceRow struct {
	consumer.InstanceSnapshot
	Picks, Errors uint64
	Latency       time.Duration // an average of its recent answers' latencies
	Meta          []string      // "key=value", sorted
}

type eventRow struct {
	Time                          time.Time
	Service, Kind, Instance, Addr string
	Detail                        string
}

// gather builds the view.
func (p *Page) gather() *view {
	srv, proxies := p.parts()
	c := p.stats
	v := &view{
		Now:        time.Now(),
		Uptime:     time.Since(c.started).Round(time.Second),
		PID:        os.Getpid(),
		Goroutines: runtime.NumGoroutine(),
		GoVersion:  runtime.Version(),
		ServerConn: c.serverConns.Load(),
	}
	v.Host, _ = os.Hostname()
	if srv != nil {
		snap := srv.Snapshot()
		v.Server = &snap
	}
	c.server.m.Range(func(k, val any) bool {
		v.Methods = append(v.Methods, row(k.(string), val.(*methodStats)))
		return true
	})
	sortRows(v.Methods)

	calls := map[string][]methodRow{}
	c.calls.m.Range(func(k, val any) bool {
		key := k.(callKey)
		calls[key.service] = append(calls[key.service], row(key.method, val.(*methodStats)))
		return true
	})
	v.Clients = calls[""]
	sortRows(v.Clients)
	for _, px := range proxies {
		snap := px.Snapshot()
		pv := proxyView{ProxySnapshot: snap, Calls: calls[snap.Service]}
		sortRows(pv.Calls)
		for _, in := range snap.Instances {
			r := instanceRow{InstanceSnapshot: in}
			if s, ok := c.instances.m.Load(instanceKey{snap.Service, in.Addr}); ok {
				is := s.(*instanceStats)
				r.Picks, r.Errors, r.Latency = is.picks.Load(), is.errors.Load(), is.latency()
			}
			for k, val := range in.Meta {
				r.Meta = append(r.Meta, k+"="+val)
			}
			slices.Sort(r.Meta)
			pv.Instances = append(pv.Instances, r)
		}
		v.Proxies = append(v.Proxies, pv)
	}
	for _, ev := range c.latestEvents() {
		v.Events = append(v.Events, eventRow{Time: ev.Time, Service: ev.Service, Kind: ev.Kind.String(), Instance: ev.Instance, Addr: ev.Addr, Detail: ev.Detail})
	}
	return v
}

func row(name string, s *methodStats) methodRow {
	q := s.latency.quantiles(0.5, 0.9, 0.99)
	return methodRow{Name: name, Calls: s.count.Load(), Errors: s.errors.Load(), P50: q[0], P90: q[1], P99: q[2]}
}

func sortRows(rows []methodRow) {
	slices.SortFunc(rows, func(a, b methodRow) int { return cmp.Compare(a.Name, b.Name) })
}

// serveDebug draws the page.
func (p *Page) serveDebug(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := pageTemplate.Execute(w, p.gather()); err != nil {
		// The header is out; all that is left is to say so in the page.
		template.HTMLEscape(w, []byte("\n\nadmin page: "+err.Error()))
	}
}

// dur formats a duration for a table cell: "—" for none, else three
// significant digits.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(10 * time.Nanosecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"dur":  dur,
	"when": func(t time.Time) string { return t.Format("15:04:05.000") },
	"join": strings.Join,
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>shoal admin</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
td.n { text-align: right; }
.bad { color: #b00020; font-weight: bold; } .ok { color: #0a7a2f; }
.muted { color: #777; }
nav a { margin-right: 1em; }
</style>
</head>
<body>
<h1>shoal admin</h1>
<p class="muted">{{.Host}} · pid {{.PID}} · {{.GoVersion}} · {{.Goroutines}} goroutines · counting for {{.Uptime}} · drawn {{when .Now}}</p>
<nav><a href="../metrics">metrics</a> · <a href="../healthz">healthz</a> · <a href="pprof/">pprof</a></nav>

<h2 id="provider">Provider</h2>
{{with .Server}}
<table>
<tr><th>health</th><td class="{{if eq .Health.String "SERVING"}}ok{{else}}bad{{end}}">{{.Health}}</td></tr>
<tr><th>shutting down</th><td>{{.ShuttingDown}}</td></tr>
<tr><th>in flight</th><td>{{.InFlight}}</td></tr>
<tr><th>listeners</th><td>{{join .Listeners ", "}}</td></tr>
<tr><th>registration</th><td>{{.Registration.State}}{{with .Registration.Instance}}{{if .Service}} · service {{.Service}} · id {{.ID}} · addr {{.Addr}}{{end}}{{end}}</td></tr>
</table>
<h3>Services</h3>
<table>
<tr><th>service</th><th>methods</th><th>health</th></tr>
{{range .Services}}<tr><td>{{.Name}}{{if .Builtin}} <span class="muted">(built in)</span>{{end}}</td><td>{{join .Methods ", "}}</td><td class="{{if eq .Health.String "SERVING"}}ok{{else}}bad{{end}}">{{.Health}}</td></tr>
{{end}}</table>
<h3>Connections ({{len .Conns}})</h3>
{{if .Conns}}<table>
<tr><th>peer</th><th>local</th><th>in flight</th><th>TLS</th><th>gone away</th></tr>
{{range .Conns}}<tr><td>{{.Remote}}</td><td>{{.Local}}</td><td class="n">{{.InFlight}}</td><td>{{.TLS}}</td><td>{{.GoneAway}}</td></tr>
{{end}}</table>{{end}}
{{else}}<p class="muted">No provider given to this page (admin.WithServer or SetServer).</p>
{{end}}
<h3>Requests by method</h3>
{{if .Methods}}<table>
<tr><th>method</th><th>calls</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th></tr>
{{range .Methods}}<tr><td>{{.Name}}</td><td class="n">{{.Calls}}</td><td class="n">{{.Errors}}</td><td class="n">{{dur .P50}}</td><td class="n">{{dur .P90}}</td><td class="n">{{dur .P99}}</td></tr>
{{end}}</table>
{{else}}<p class="muted">No request counted yet (install StatsHandler with provider.WithStatsHandler).</p>{{end}}

<h2 id="consumers">Consumers</h2>
{{range .Proxies}}
<h3>ClientProxy “{{.Service}}”</h3>
<table>
<tr><th>balancing</th><td>{{.Balancer}}</td></tr>
<tr><th>fail mode</th><td>{{.FailMode}}</td></tr>
<tr><th>registry fallback</th><td>{{if .InFallback}}<span class="bad">in fallback</span>{{else}}no{{end}} · entered {{.Fallbacks}} times</td></tr>
<tr><th>health checks</th><td>{{if .HealthCheck}}every {{.HealthCheck}}{{else}}off{{end}}</td></tr>
</table>
<table>
<tr><th>instance</th><th>address</th><th>weight</th><th>meta</th><th>state</th><th>health</th><th>picks</th><th>errors</th><th>in flight</th><th>latency</th><th>conns</th></tr>
{{range .Instances}}<tr><td>{{.ID}}</td><td>{{.Addr}}</td><td class="n">{{.Weight}}</td><td>{{join .Meta ", "}}</td>
<td>{{if .InPicks}}<span class="ok">in picks</span>{{else}}<span class="bad">out of picks</span>{{end}}{{if .Ejected}} · <span class="bad">ejected until {{when .EjectedUntil}}</span>{{end}}{{if .Probation}} · on probation{{end}}{{if not .Listed}} · <span class="bad">fallback (not listed)</span>{{end}}</td>
<td>{{if .Health.Checked}}<span class="{{if .Health.OK}}ok{{else}}bad{{end}}">{{.Health.Detail}}</span> <span class="muted">at {{when .Health.At}}</span>{{else}}<span class="muted">not checked</span>{{end}}</td>
<td class="n">{{.Picks}}</td><td class="n">{{.Errors}}</td><td class="n">{{.Pending}}</td><td class="n">{{dur .Latency}}</td><td class="n">{{.Conns}}</td></tr>
{{end}}</table>
{{if .Calls}}<table>
<tr><th>method</th><th>calls</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th></tr>
{{range .Calls}}<tr><td>{{.Name}}</td><td class="n">{{.Calls}}</td><td class="n">{{.Errors}}</td><td class="n">{{dur .P50}}</td><td class="n">{{dur .P90}}</td><td class="n">{{dur .P99}}</td></tr>
{{end}}</table>{{end}}
{{else}}<p class="muted">No ClientProxy given to this page (admin.WithProxies or AddProxy).</p>
{{end}}
{{if .Clients}}<h3>Client calls (no proxy)</h3>
<table>
<tr><th>address and method</th><th>calls</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th></tr>
{{range .Clients}}<tr><td>{{.Name}}</td><td class="n">{{.Calls}}</td><td class="n">{{.Errors}}</td><td class="n">{{dur .P50}}</td><td class="n">{{dur .P90}}</td><td class="n">{{dur .P99}}</td></tr>
{{end}}</table>{{end}}

<h2 id="events">Recent proxy decisions</h2>
{{if .Events}}<table>
<tr><th>time</th><th>service</th><th>what</th><th>instance</th><th>address</th><th>detail</th></tr>
{{range .Events}}<tr><td>{{when .Time}}</td><td>{{.Service}}</td><td>{{.Kind}}</td><td>{{.Instance}}</td><td>{{.Addr}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{else}}<p class="muted">None yet: ejections, readmissions, health changes, registry fallbacks and retry-budget refusals are listed here.</p>{{end}}
</body>
</html>
`
