package browsertest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ErrTimeout is returned (wrapped) by WaitFor and WaitText when the page
// did not get there in time; check with errors.Is.
var ErrTimeout = errors.New("timed out")

// Viewport size of every browser, in CSS pixels (the device scale factor
// is forced to 1, so screenshots have these dimensions too).
const (
	Width  = 1280
	Height = 900
)

// elementKey names an element reference in W3C WebDriver JSON.
const elementKey = "element-6066-11e4-a52e-4f735466cecf"

// Browser is one tab of a headless Chromium, driven over WebDriver. Its
// methods send one or a few commands each and are not safe for concurrent
// use.
type Browser struct {
	d       *driver
	session string // "/session/ID"
	console []logEntry
}

type logEntry struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Source  string `json:"source"`
}

// unavailable skips the test, or fails it under CI=true: CI must never
// pass by skipping.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("headless Chromium unavailable under CI=true: %v", err)
	}
	t.Skipf("headless Chromium unavailable: %v", err)
}

// Start starts a chromedriver and a headless Chromium of the test's own
// (1 to 3 s on two cores) and stops both, with everything they started, when the test
// ends. When they cannot be found or started the test is skipped, except
// under CI=true, where it fails.
func Start(t testing.TB) *Browser {
	t.Helper()
	began := time.Now()
	b, version, err := launch()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(b.quit)
	t.Logf("browsertest: Chromium %s ready in %v", version, time.Since(began).Round(time.Millisecond))
	return b
}

// shared is the browser Shared hands out, one test at a time.
var shared struct {
	sync.Mutex                        // held by the test using it
	holder     atomic.Pointer[string] // its name
	b          *Browser               // the session; its first tab stays blank and open
	home       string                 // that tab's handle: closing the last tab would end the session
	err        error                  // why it could not start, reported to every later test
}

// Shared returns a fresh tab of a headless Chromium shared by the tests of
// the package: the first test that asks starts it, as Start would, and
// each later test pays for a tab only (tens of milliseconds). The tab is
// closed when the test ends.
//
// Tests holding the shared browser run one at a time: a parallel test
// waits in Shared until the holder ends. So call t.Parallel before Shared,
// never after; and the holder must not call Shared again, nor its subtests
// (that fails at once). Cookies are cleared for each tab; other storage
// (localStorage, the cache) is per origin, and httptest servers differ in
// port, but file:// pages share one origin: use Start for a test that
// needs a profile of its own.
//
// The browser lives until the test binary exits; it leaves no goroutine
// running between tests, so goleak in TestMain is content. Unavailability
// is handled as in Start.
func Shared(t testing.TB) *Browser {
	t.Helper()
	if h := shared.holder.Load(); h != nil && (*h == t.Name() || strings.HasPrefix(t.Name(), *h+"/")) {
		t.Fatalf("browsertest.Shared: %s holds the shared browser, and would wait for %s forever: pass its Browser down, or call Shared in the subtests only", *h, t.Name())
	}
	shared.Lock()
	name := t.Name()
	shared.holder.Store(&name)
	t.Cleanup(func() {
		shared.holder.Store(nil)
		shared.Unlock()
	})
	if shared.err != nil {
		unavailable(t, shared.err)
	}
	for attempt := 0; ; attempt++ {
		if shared.b == nil {
			began := time.Now()
			b, version, err := launch()
			if err != nil {
				shared.err = err
				unavailable(t, err)
			}
			var handle string
			if err := b.d.do(http.MethodGet, b.session+"/window", nil, &handle); err != nil {
				b.quit()
				shared.err = err
				unavailable(t, err)
			}
			shared.b, shared.home = b, handle
			t.Logf("browsertest: shared Chromium %s ready in %v", version, time.Since(began).Round(time.Millisecond))
		}
		tab, err := shared.b.newTab()
		if err == nil {
			t.Cleanup(func() {
				if err := tab.closeTab(shared.home); err != nil {
					t.Logf("browsertest: closing the tab: %v; the shared browser will be restarted", err)
					shared.b.quit()
					shared.b = nil
				}
			})
			return tab
		}
		// The browser may have died with a previous test: start it anew, once.
		shared.b.quit()
		shared.b = nil
		if attempt > 0 {
			t.Fatalf("browsertest: opening a tab in the shared browser: %v", err)
		}
	}
}

// args are Chromium's flags. --no-sandbox: the sandbox refuses to run as
// root, and cannot start in containers without user namespaces; the pages
// tested are our own. /dev/shm is small in containers.
func args(profile string) []string {
	return []string{
		"--headless=new",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-dev-shm-usage",
		"--user-data-dir=" + profile,
		fmt.Sprintf("--window-size=%d,%d", Width, Height),
		"--force-device-scale-factor=1",
		"--no-first-run",
		"--no-default-browser-check",
	}
}

// launch starts a chromedriver and a session with its browser.
func launch() (*Browser, string, error) {
	driverBin, browserBin, err := binaries()
	if err != nil {
		return nil, "", err
	}
	d, err := startDriver(driverBin)
	if err != nil {
		return nil, "", err
	}
	req := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":      "chrome",
		"pageLoadStrategy": "normal",
		"timeouts":         map[string]int{"implicit": 0, "pageLoad": 30_000, "script": 30_000},
		"goog:chromeOptions": map[string]any{
			"binary": browserBin,
			"args":   args(filepath.Join(d.dir, "profile")),
		},
		// Console messages, uncaught exceptions and failed loads, read
		// back through /se/log (ConsoleErrors).
		"goog:loggingPrefs": map[string]string{"browser": "ALL"},
	}}}
	var resp struct {
		SessionID    string `json:"sessionId"`
		Capabilities struct {
			BrowserVersion string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	if err := d.do(http.MethodPost, "/session", req, &resp); err != nil {
		err = fmt.Errorf("starting %s through %s: %w; %s", browserBin, driverBin, err, d.logTail())
		d.stop()
		return nil, "", err
	}
	b := &Browser{d: d, session: "/session/" + resp.SessionID}
	if err := b.sizeViewport(); err != nil {
		b.quit()
		return nil, "", err
	}
	return b, resp.Capabilities.BrowserVersion, nil
}

// sizeViewport makes the viewport Width × Height. --window-size sets the
// window's outer size, and headless Chromium keeps room for a toolbar it
// does not draw; new tabs have the window's size.
func (b *Browser) sizeViewport() error {
	var frame []int
	if err := b.eval(&frame, `return [outerWidth - innerWidth, outerHeight - innerHeight]`); err != nil {
		return fmt.Errorf("sizing the viewport: %w", err)
	}
	rect := map[string]int{"width": Width + frame[0], "height": Height + frame[1]}
	if err := b.do(http.MethodPost, "/window/rect", rect, nil); err != nil {
		return fmt.Errorf("sizing the viewport: %w", err)
	}
	return nil
}

// quit ends the session (closing the browser) and stops chromedriver.
func (b *Browser) quit() {
	_ = b.d.do(http.MethodDelete, b.session, nil, nil)
	b.d.stop()
}

// newTab opens a blank tab in b's session and returns a Browser driving
// it, with no cookies and no console entries from earlier tabs.
func (b *Browser) newTab() (*Browser, error) {
	var w struct {
		Handle string `json:"handle"`
	}
	if err := b.do(http.MethodPost, "/window/new", map[string]string{"type": "tab"}, &w); err != nil {
		return nil, err
	}
	if err := b.do(http.MethodPost, "/window", map[string]string{"handle": w.Handle}, nil); err != nil {
		return nil, err
	}
	if err := b.cdp("Network.clearBrowserCookies", nil, nil); err != nil {
		return nil, err
	}
	// Drop what earlier tabs logged.
	if err := b.do(http.MethodPost, "/se/log", map[string]string{"type": "browser"}, nil); err != nil {
		return nil, err
	}
	return &Browser{d: b.d, session: b.session}, nil
}

// closeTab closes b's tab and goes back to the tab home.
func (b *Browser) closeTab(home string) error {
	if err := b.do(http.MethodDelete, "/window", nil, nil); err != nil {
		return err
	}
	return b.do(http.MethodPost, "/window", map[string]string{"handle": home}, nil)
}

func (b *Browser) do(method, path string, body, out any) error {
	return b.d.do(method, b.session+path, body, out)
}

// cdp sends a Chrome DevTools Protocol command to the tab through
// chromedriver.
func (b *Browser) cdp(method string, params map[string]any, out any) error {
	if params == nil {
		params = map[string]any{}
	}
	return b.do(http.MethodPost, "/goog/cdp/execute", map[string]any{"cmd": method, "params": params}, out)
}

// Open navigates to address (http://127.0.0.1:... or file://, see FileURL)
// and waits until document.readyState is "complete".
func (b *Browser) Open(address string) error {
	if err := b.do(http.MethodPost, "/url", map[string]string{"url": address}, nil); err != nil {
		return fmt.Errorf("open %s: %w", address, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state string
		err := b.eval(&state, "return document.readyState")
		if err == nil && state == "complete" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("open %s: document.readyState %q after 30s (%v): %w", address, state, err, ErrTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FileURL returns the file:// URL of a local file, for Open.
func FileURL(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// Eval runs js as the body of a function in the page (WebDriver's
// execute/sync): `return` gives the result, decoded from JSON (float64,
// string, bool, nil, []any, map[string]any), and args are arguments[0],
// arguments[1], ... A thrown exception comes back as a *WebDriverError
// with Code "javascript error".
func (b *Browser) Eval(js string, args ...any) (any, error) {
	var v any
	err := b.eval(&v, js, args...)
	return v, err
}

func (b *Browser) eval(out any, js string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	return b.do(http.MethodPost, "/execute/sync", map[string]any{"script": js, "args": args}, out)
}

// Texts returns the innerText of every element matching the CSS selector,
// in document order. Elements that are not rendered (display: none,
// [hidden]) are included, with their textContent: see VisibleTexts.
func (b *Browser) Texts(css string) ([]string, error) {
	var texts []string
	err := b.eval(&texts, `return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText)`, css)
	return texts, err
}

// VisibleTexts is Texts of only the matching elements that are rendered
// and not visibility: hidden, as a reader sees them.
func (b *Browser) VisibleTexts(css string) ([]string, error) {
	var texts []string
	err := b.eval(&texts, `return Array.from(document.querySelectorAll(arguments[0])).
		filter(e => e.checkVisibility({visibilityProperty: true})).map(e => e.innerText)`, css)
	return texts, err
}

// Count returns how many elements match the CSS selector.
func (b *Browser) Count(css string) (int, error) {
	var n int
	err := b.eval(&n, `return document.querySelectorAll(arguments[0]).length`, css)
	return n, err
}

// find returns the WebDriver reference of the first element matching css.
func (b *Browser) find(css string) (string, error) {
	var ref map[string]string
	if err := b.do(http.MethodPost, "/element", map[string]string{"using": "css selector", "value": css}, &ref); err != nil {
		return "", fmt.Errorf("finding %q: %w", css, err)
	}
	return ref[elementKey], nil
}

// Click clicks the first element matching css as a user would: scrolled
// into view, in its middle; an element hidden or covered by another gives
// a *WebDriverError ("element not interactable", "element click
// intercepted"), and no match gives "no such element".
func (b *Browser) Click(css string) error {
	id, err := b.find(css)
	if err != nil {
		return err
	}
	if err := b.do(http.MethodPost, "/element/"+id+"/click", nil, nil); err != nil {
		return fmt.Errorf("clicking %q: %w", css, err)
	}
	return nil
}

// Type clears the first element matching css, then types text into it key
// by key (each key fires input events). Clearing fires change, not input:
// Type(css, "") may leave a filter as it was.
func (b *Browser) Type(css, text string) error {
	id, err := b.find(css)
	if err != nil {
		return err
	}
	if err := b.do(http.MethodPost, "/element/"+id+"/clear", nil, nil); err != nil {
		return fmt.Errorf("clearing %q: %w", css, err)
	}
	if text == "" {
		return nil
	}
	if err := b.do(http.MethodPost, "/element/"+id+"/value", map[string]string{"text": text}, nil); err != nil {
		return fmt.Errorf("typing into %q: %w", css, err)
	}
	return nil
}

// WaitFor waits until at least one element matches css (rendered or not).
func (b *Browser) WaitFor(css string, timeout time.Duration) error {
	return b.poll(timeout, func() (bool, string, error) {
		n, err := b.Count(css)
		return n > 0, fmt.Sprintf("%q matched nothing", css), err
	})
}

// WaitText waits until the innerText of an element matching css contains
// substring.
func (b *Browser) WaitText(css, substring string, timeout time.Duration) error {
	return b.poll(timeout, func() (bool, string, error) {
		texts, err := b.Texts(css)
		for _, s := range texts {
			if strings.Contains(s, substring) {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("no %q contains %q; texts: %q", css, substring, texts), err
	})
}

// poll calls check every 50 ms until it is done or timeout passes. Errors
// while the page changes (a navigation in flight) are retried; those that
// retrying cannot fix end the wait at once.
func (b *Browser) poll(timeout time.Duration, check func() (done bool, state string, err error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, state, err := check()
		if err == nil && done {
			return nil
		}
		if err != nil && permanent(err) {
			return err
		}
		if time.Now().After(deadline) {
			if err != nil {
				state = err.Error()
			}
			return fmt.Errorf("after %v: %s: %w", timeout, state, ErrTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func permanent(err error) bool {
	var we *WebDriverError
	if !errors.As(err, &we) {
		return true // chromedriver itself is gone
	}
	switch we.Code {
	case "invalid session id", "invalid selector", "invalid argument", "no such window":
		return true
	}
	return strings.Contains(we.Message, "is not a valid selector")
}

// Screenshot writes a PNG of the viewport (Width × Height) to path.
func (b *Browser) Screenshot(path string) error {
	var data string
	if err := b.do(http.MethodGet, "/screenshot", nil, &data); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return writeBase64(path, data)
}

// FullPageScreenshot writes a PNG of the whole page, beyond the viewport,
// to path (DevTools' Page.captureScreenshot with captureBeyondViewport).
func (b *Browser) FullPageScreenshot(path string) error {
	var metrics struct {
		Content struct {
			Width  float64 `json:"width"`
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := b.cdp("Page.getLayoutMetrics", nil, &metrics); err != nil {
		return fmt.Errorf("full-page screenshot: %w", err)
	}
	var shot struct {
		Data string `json:"data"`
	}
	err := b.cdp("Page.captureScreenshot", map[string]any{
		"format":                "png",
		"captureBeyondViewport": true,
		"clip": map[string]any{
			"x": 0, "y": 0, "scale": 1,
			"width":  metrics.Content.Width,
			"height": metrics.Content.Height,
		},
	}, &shot)
	if err != nil {
		return fmt.Errorf("full-page screenshot: %w", err)
	}
	return writeBase64(path, shot.Data)
}

func writeBase64(path, data string) error {
	png, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// ConsoleErrors returns the browser log entries of level SEVERE since the
// tab was opened: console.error messages, uncaught exceptions and
// unhandled promise rejections ("Uncaught Error: ..."), and resources that
// failed to load ("Failed to load resource: the server responded with a
// status of 404"). Each is chromedriver's text: the page's URL and line,
// then the message.
//
// Chromium asks an http page's server for /favicon.ico after the load, at
// a moment of its choosing, unless the page names an icon: a server that
// answers 404 adds an error here sometimes. Serve one, or put
// <link rel="icon" href="data:,"> in the page's head.
func (b *Browser) ConsoleErrors() ([]string, error) {
	if err := b.readLog(); err != nil {
		return nil, err
	}
	var errs []string
	for _, e := range b.console {
		if e.Level == "SEVERE" {
			errs = append(errs, e.Message)
		}
	}
	return errs, nil
}

// readLog moves the session's new browser log entries into b.console
// (chromedriver hands each entry out once).
func (b *Browser) readLog() error {
	var entries []logEntry
	if err := b.do(http.MethodPost, "/se/log", map[string]string{"type": "browser"}, &entries); err != nil {
		return fmt.Errorf("reading the browser log: %w", err)
	}
	b.console = append(b.console, entries...)
	return nil
}
