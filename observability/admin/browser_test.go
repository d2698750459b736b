package admin_test

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// textPage is a page of the test's own that loads the admin page in a frame
// and, once it has loaded, writes the frame's visible text (innerText: what
// a person reads, hidden parts left out, a tab between table cells) into
// <pre id="text">, which chromium's --dump-dom then prints.
const textPage = `<!DOCTYPE html><html><body>
<iframe id="f" src="debug/shoal" style="width:1600px;height:4000px"></iframe>
<script>
document.getElementById("f").onload = function () {
	var pre = document.createElement("pre");
	pre.id = "text";
	pre.textContent = this.contentDocument.body.innerText;
	document.body.appendChild(pre);
};
</script></body></html>`

// visibleText renders url's admin page in headless Chromium and returns its
// visible text.
func visibleText(t *testing.T, chromium string, page http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", page)
	mux.HandleFunc("/text", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(textPage))
	})
	web := httptest.NewServer(mux)
	defer web.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", web.URL+"/text")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`(?s)<pre id="text">(.*?)</pre>`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("chromium's DOM has no text of the page:\n%s\n%s", out, stderr.String())
	}
	return html.UnescapeString(m[1])
}

func TestChromiumShowsServicesAndCounts(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			chromium = path
			break
		}
	}
	if chromium == "" {
		chromium = tool(t, "chromium") // skips, or fails under CI=true
	}
	f := newFixture(t, "", nil)
	f.calls(t, "Arith.Add", 7, false)
	f.calls(t, "Arith.Fail", 3, true)
	// A server counts a request just after its reply is on its way: wait
	// for the last one before the browser looks.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, _, body := get(t, f.web.URL, "/debug/shoal"); strings.Contains(body, `<td>Arith.Fail</td><td class="n">3</td>`) {
			break
		}
	}

	text := visibleText(t, chromium, f.page)
	provider, consumers, ok := strings.Cut(text, "\nConsumers\n")
	if !ok {
		t.Fatalf("the page's visible text has no Consumers heading:\n%s", text)
	}
	has := func(part, pattern string) bool {
		re := regexp.MustCompile(pattern)
		for _, l := range strings.Split(part, "\n") {
			if re.MatchString(strings.TrimSpace(l)) {
				return true
			}
		}
		return false
	}
	for _, want := range []struct{ what, part, pattern string }{
		{"the service and its methods", provider, `^Arith\tAdd, Fail\tSERVING$`},
		{"the health service, marked", provider, `^ShoalHealth \(built in\)\tCheck, Watch\tSERVING$`},
		{"Arith.Add's requests: 7, no error", provider, `^Arith\.Add\t7\t0\t`},
		{"Arith.Fail's requests: 3, 3 errors", provider, `^Arith\.Fail\t3\t3\t`},
		{"the provider's health", provider, `^health\tSERVING$`},
		{"the registration", provider, `^registration\tregistered · service arith · id \S+ · addr tcp@127\.0\.0\.1:\d+$`},
		{"one connection", provider, `^Connections \(1\)$`},
		{"the proxy", consumers, `^ClientProxy “arith”$`},
		{"the instance, picked 10 times, 3 errors", consumers, `^\S+\ttcp@127\.0\.0\.1:\d+\t1\t\tin picks\t(SERVING at \S+|not checked)\t10\t3\t0\t`},
		{"the proxy's Arith.Add calls: 7, no error", consumers, `^Arith\.Add\t7\t0\t`},
		{"the proxy's Arith.Fail calls: 3, 3 errors", consumers, `^Arith\.Fail\t3\t3\t`},
	} {
		if !has(want.part, want.pattern) {
			t.Errorf("the page's visible text does not show %s (%s)", want.what, want.pattern)
		}
	}
	if t.Failed() || os.Getenv("SHOAL_SHOW_PAGE") != "" {
		t.Logf("visible text:\n%s", text)
	}
}
