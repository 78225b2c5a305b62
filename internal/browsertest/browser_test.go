package browsertest_test

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/browsertest"
)

// TestMain checks that the shared browser, alive until the binary exits,
// leaves no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const listPage = `<!doctype html>
<title>list</title>
<link rel="icon" href="data:,">
<input id="filter" placeholder="filter">
<button id="reset">reset</button>
<button id="more">more</button>
<ul id="list"><li>alpha</li><li>beta</li><li>gamma</li></ul>
<script>
const filter = document.getElementById("filter");
const list = document.getElementById("list");
function apply() {
  for (const li of list.querySelectorAll("li")) li.hidden = !li.textContent.includes(filter.value);
}
filter.addEventListener("input", apply);
document.getElementById("reset").addEventListener("click", () => { filter.value = ""; apply(); });
document.getElementById("more").addEventListener("click", () => setTimeout(() => {
  const li = document.createElement("li");
  li.textContent = "delta";
  list.append(li);
  apply();
}, 200));
</script>
`

const noisyPage = `<!doctype html>
<title>noisy</title>
<link rel="icon" href="data:,">
<p>noisy</p>
<img src="/missing.png" alt="">
<script>
console.log("just information");
console.error("bad thing happened");
Promise.reject(new Error("nobody caught this promise"));
</script>
<script>throw new Error("boom at load");</script>
`

const cleanPage = `<!doctype html>
<title>clean</title>
<link rel="icon" href="data:,">
<p id="p">clean</p>
<script>console.log("all is well"); document.getElementById("p").textContent += " and scripted";</script>
`

// A page twice as tall as the viewport: red on top, blue below.
const tallPage = `<!doctype html>
<title>tall</title>
<link rel="icon" href="data:,">
<style>body { margin: 0 } div { width: 100%; height: 1800px }</style>
<div style="background: rgb(255, 0, 0)"></div>
<div style="background: rgb(0, 0, 255)"></div>
`

// serve starts a loopback server with the pages by path; anything else is
// 404.
func serve(t *testing.T, pages map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func texts(t *testing.T, b *browsertest.Browser, css string) []string {
	t.Helper()
	v, err := b.Texts(css)
	check(t, err)
	return v
}

func visibleTexts(t *testing.T, b *browsertest.Browser, css string) []string {
	t.Helper()
	v, err := b.VisibleTexts(css)
	check(t, err)
	return v
}

func eval(t *testing.T, b *browsertest.Browser, js string, args ...any) any {
	t.Helper()
	v, err := b.Eval(js, args...)
	check(t, err)
	return v
}

func consoleErrors(t *testing.T, b *browsertest.Browser) []string {
	t.Helper()
	v, err := b.ConsoleErrors()
	check(t, err)
	return v
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestFilterList(t *testing.T) {
	srv := serve(t, map[string]string{"/": listPage})
	b := browsertest.Shared(t)
	check(t, b.Open(srv.URL))

	all := []string{"alpha", "beta", "gamma"}
	equal(t, "Texts before filtering", texts(t, b, "#list li"), all)
	equal(t, "VisibleTexts before filtering", visibleTexts(t, b, "#list li"), all)

	check(t, b.Type("#filter", "al"))
	equal(t, `VisibleTexts after typing "al"`, visibleTexts(t, b, "#list li"), []string{"alpha"})
	// Hidden elements are still matched by Texts, with their text.
	equal(t, `Texts after typing "al"`, texts(t, b, "#list li"), all)
	if n, err := b.Count("#list li:not([hidden])"); err != nil || n != 1 {
		t.Errorf("Count of shown items = %d, %v, want 1", n, err)
	}

	// Type replaces what the field held.
	check(t, b.Type("#filter", "ga"))
	equal(t, `VisibleTexts after typing "ga"`, visibleTexts(t, b, "#list li"), []string{"gamma"})
	if v := eval(t, b, `return document.getElementById("filter").value`); v != "ga" {
		t.Errorf("filter value = %v, want ga", v)
	}

	check(t, b.Click("#reset"))
	equal(t, "VisibleTexts after reset", visibleTexts(t, b, "#list li"), all)

	// The new item comes 200 ms after the click.
	check(t, b.Click("#more"))
	check(t, b.WaitText("#list li", "delta", 5*time.Second))
	check(t, b.WaitFor("#list li:nth-child(4)", time.Second))
	equal(t, "Texts after more", texts(t, b, "#list li"), []string{"alpha", "beta", "gamma", "delta"})

	if err := b.WaitFor("#absent", 200*time.Millisecond); !errors.Is(err, browsertest.ErrTimeout) {
		t.Errorf("WaitFor(#absent) = %v, want ErrTimeout", err)
	}
	if err := b.WaitText("#list li", "epsilon", 200*time.Millisecond); !errors.Is(err, browsertest.ErrTimeout) || !strings.Contains(err.Error(), "delta") {
		t.Errorf("WaitText(epsilon) = %v, want ErrTimeout listing the texts seen", err)
	}
	var we *browsertest.WebDriverError
	if err := b.Click("#absent"); !errors.As(err, &we) || we.Code != "no such element" {
		t.Errorf(`Click(#absent) = %v, want WebDriverError "no such element"`, err)
	}
	if errs := consoleErrors(t, b); len(errs) != 0 {
		t.Errorf("ConsoleErrors = %q, want none", errs)
	}
}

func TestEval(t *testing.T) {
	srv := serve(t, map[string]string{"/": cleanPage})
	b := browsertest.Shared(t)
	check(t, b.Open(srv.URL))
	if v := eval(t, b, `return arguments[0] + arguments[1]`, 2, 3); v != 5.0 {
		t.Errorf("Eval(2+3) = %v (%T), want 5", v, v)
	}
	if v := eval(t, b, `return [document.title, location.href]`); !slices.Equal(v.([]any), []any{"clean", srv.URL + "/"}) {
		t.Errorf("Eval(title, href) = %v", v)
	}
	var we *browsertest.WebDriverError
	if _, err := b.Eval(`throw new Error("thrown on purpose")`); !errors.As(err, &we) || we.Code != "javascript error" || !strings.Contains(we.Message, "thrown on purpose") {
		t.Errorf("Eval(throw) = %v, want a javascript error", err)
	}
}

func TestConsoleErrors(t *testing.T) {
	srv := serve(t, map[string]string{"/noisy": noisyPage, "/clean": cleanPage})

	t.Run("noisy", func(t *testing.T) {
		b := browsertest.Shared(t)
		check(t, b.Open(srv.URL+"/noisy"))
		errs := consoleErrors(t, b)
		for _, want := range []string{
			"bad thing happened",           // console.error
			"Uncaught Error: boom at load", // an uncaught exception
			"nobody caught this promise",   // an unhandled rejection
			"/missing.png",                 // a failed load ...
			"status of 404",                // ... and why
		} {
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, want) }) {
				t.Errorf("ConsoleErrors lacks %q: %q", want, errs)
			}
		}
		if slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "just information") }) {
			t.Errorf("ConsoleErrors holds console.log's message: %q", errs)
		}
		// Entries are kept: asking again gives them again.
		if again := consoleErrors(t, b); !slices.Equal(again, errs) {
			t.Errorf("ConsoleErrors again = %q, want %q", again, errs)
		}
	})

	// The next tab of the shared browser starts without the noisy page's
	// entries.
	t.Run("clean", func(t *testing.T) {
		b := browsertest.Shared(t)
		check(t, b.Open(srv.URL+"/clean"))
		check(t, b.WaitText("#p", "and scripted", time.Second))
		if errs := consoleErrors(t, b); len(errs) != 0 {
			t.Errorf("ConsoleErrors of a clean page = %q, want none", errs)
		}
	})

	// An error raised after the load, by a click, is caught too.
	t.Run("after a click", func(t *testing.T) {
		page := `<!doctype html><link rel="icon" href="data:,"><button id="b" onclick="setTimeout(() => { document.body.dataset.done = 1; null.x })">go</button>`
		srv := serve(t, map[string]string{"/": page})
		b := browsertest.Shared(t)
		check(t, b.Open(srv.URL))
		check(t, b.Click("#b"))
		check(t, b.WaitFor("body[data-done]", 5*time.Second))
		errs := consoleErrors(t, b)
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "Uncaught TypeError") }) {
			t.Errorf("ConsoleErrors after the click = %q, want an Uncaught TypeError", errs)
		}
	})
}

func TestScreenshot(t *testing.T) {
	srv := serve(t, map[string]string{"/": tallPage})
	b := browsertest.Shared(t)
	check(t, b.Open(srv.URL))
	dir := t.TempDir()

	viewport := filepath.Join(dir, "viewport.png")
	check(t, b.Screenshot(viewport))
	img := decodePNG(t, viewport)
	size := eval(t, b, `return [innerWidth, innerHeight]`).([]any)
	if got, want := img.Bounds().Size(), (image.Point{browsertest.Width, browsertest.Height}); got != want ||
		size[0] != float64(want.X) || size[1] != float64(want.Y) {
		t.Errorf("viewport screenshot %v, window inner size %v, want both %v", got, size, want)
	}
	if c := rgb(img.At(10, img.Bounds().Dy()-1)); c != [3]uint8{255, 0, 0} {
		t.Errorf("viewport screenshot's bottom is %v, want red", c)
	}

	full := filepath.Join(dir, "full.png")
	check(t, b.FullPageScreenshot(full))
	img = decodePNG(t, full)
	if got := img.Bounds().Dy(); got != 3600 {
		t.Errorf("full-page screenshot is %d pixels high, want 3600", got)
	}
	if c := rgb(img.At(10, img.Bounds().Dy()-1)); c != [3]uint8{0, 0, 255} {
		t.Errorf("full-page screenshot's bottom is %v, want blue", c)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func rgb(c color.Color) [3]uint8 {
	r, g, b, _ := c.RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

// A local file, as the HTML report is, its name needing escapes in a URL.
func TestFileURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit report #1.html")
	page := `<!doctype html><title>report</title><ul id="rows"></ul>
<script>for (const s of ["one", "two"]) document.getElementById("rows").append(Object.assign(document.createElement("li"), {textContent: s}));</script>`
	check(t, os.WriteFile(path, []byte(page), 0o644))
	b := browsertest.Shared(t)
	check(t, b.Open(browsertest.FileURL(path)))
	equal(t, "Texts of the file", texts(t, b, "#rows li"), []string{"one", "two"})
	if v := eval(t, b, `return location.protocol`); v != "file:" {
		t.Errorf("location.protocol = %v, want file:", v)
	}
	if errs := consoleErrors(t, b); len(errs) != 0 {
		t.Errorf("ConsoleErrors = %q, want none", errs)
	}
}

// Shared tabs do not see each other's cookies.
func TestSharedTabsAreFresh(t *testing.T) {
	srv := serve(t, map[string]string{"/": cleanPage})
	t.Run("set", func(t *testing.T) {
		b := browsertest.Shared(t)
		check(t, b.Open(srv.URL))
		eval(t, b, `document.cookie = "left=behind; max-age=3600"; return document.cookie`)
	})
	t.Run("get", func(t *testing.T) {
		b := browsertest.Shared(t)
		if v := eval(t, b, `return location.href`); v != "about:blank" {
			t.Errorf("a new tab shows %v, want about:blank", v)
		}
		check(t, b.Open(srv.URL))
		if v := eval(t, b, `return document.cookie`); v != "" {
			t.Errorf("cookies of an earlier tab: %q", v)
		}
	})
}

// fatalTB is the test it wraps under another name, with Fatalf recorded.
type fatalTB struct {
	testing.TB
	name, msg string
}

func (f *fatalTB) Name() string { return f.name }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Shared waits while another test holds the browser, so the holder or its
// subtests asking again would wait forever: they fail at once.
func TestSharedTwiceFailsFast(t *testing.T) {
	browsertest.Shared(t)
	for _, name := range []string{t.Name(), t.Name() + "/subtest"} {
		f := &fatalTB{TB: t, name: name}
		done := make(chan struct{})
		go func() {
			defer close(done)
			browsertest.Shared(f)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Shared from %s waits", name)
		}
		if !strings.Contains(f.msg, "holds the shared browser") {
			t.Errorf("Shared from %s: Fatalf(%q), want a message saying who holds the browser", name, f.msg)
		}
	}
}

// Without chromedriver the test skips, except under CI=true, where it
// fails. The test binary runs itself with chromedriver out of reach.
func TestUnavailable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"start", "shared"} {
		for _, ci := range []string{"", "true"} {
			t.Run(mode+"/CI="+ci, func(t *testing.T) {
				cmd := exec.Command(exe, "-test.run=^TestHelperUnavailable$", "-test.v", "-test.count=1")
				cmd.Env = []string{"PATH=" + t.TempDir(), "HOME=" + os.Getenv("HOME"), "BROWSERTEST_HELPER=" + mode, "CI=" + ci}
				out, err := cmd.CombinedOutput()
				if ci == "true" {
					if err == nil || !strings.Contains(string(out), "--- FAIL: TestHelperUnavailable") {
						t.Errorf("under CI=true: %v, want a failure; output:\n%s", err, out)
					}
				} else if err != nil || !strings.Contains(string(out), "--- SKIP: TestHelperUnavailable") {
					t.Errorf("without CI: %v, want a skip; output:\n%s", err, out)
				}
				if !strings.Contains(string(out), "chromedriver not found") {
					t.Errorf("the reason is not given; output:\n%s", out)
				}
			})
		}
	}
}

// TestHelperUnavailable is run by TestUnavailable; on its own it does
// nothing.
func TestHelperUnavailable(t *testing.T) {
	switch os.Getenv("BROWSERTEST_HELPER") {
	case "start":
		browsertest.Start(t)
	case "shared":
		browsertest.Shared(t)
	default:
		return
	}
	t.Error("a browser started with chromedriver out of reach")
}
