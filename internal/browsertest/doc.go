// Package browsertest drives a real headless Chromium for tests of web
// pages: the review web view and the self-contained HTML report. It is test
// support: import it from _test.go files only.
//
//	b := browsertest.Shared(t) // or Start(t) for a browser of the test's own
//	if err := b.Open(srv.URL); err != nil { t.Fatal(err) }
//	if err := b.Type("#filter", "alpha"); err != nil { t.Fatal(err) }
//	got, err := b.VisibleTexts("#entries li")
//	...
//	if errs, err := b.ConsoleErrors(); err != nil || len(errs) > 0 { t.Fatal(errs, err) }
//
// It speaks W3C WebDriver, a small JSON-over-HTTP protocol, to chromedriver
// with net/http and encoding/json: a dozen commands do not justify a new
// module and its dependencies (chromedp, rod, a Selenium client), and the
// browser and its driver come as two Debian packages of one version
// (chromium, chromium-driver), so nothing needs downloading at test time.
// Two things beyond WebDriver go through chromedriver's own endpoints: the
// browser log (/se/log, for ConsoleErrors) and DevTools commands
// (/goog/cdp/execute, for full-page screenshots and clearing cookies).
//
// Each browser is a chromedriver on a free loopback port (spoken to on
// 127.0.0.1; it also listens on [::1] and accepts local connections only)
// that starts Chromium with --headless=new, a temporary profile and a
// Width × Height viewport. Both run in a process group of their own,
// stopped when the test (Start) or the test binary (Shared) ends, even by
// a panic or SIGKILL: a watchdog shell then kills the group and removes
// the temporary directory.
//
// Pages served over http should name an icon (<link rel="icon"
// href="data:,">) or serve /favicon.ico: Chromium asks for it after the
// load, and a 404 becomes a console error at a moment of its choosing.
//
// When chromedriver or Chromium is missing, or the browser does not start,
// the test is skipped, except under CI=true, where it fails: CI must never
// pass by skipping. .ci/run installs both. To run the tests locally:
//
//	apt-get install chromium chromium-driver   # Debian; or set $CHROMEDRIVER and $CHROME_BIN
//	go test -count=1 ./internal/browsertest/
//	CI=true go test -count=1 ./internal/browsertest/   # as CI: no skipping
//
// Methods return errors (a *WebDriverError carries chromedriver's error
// code); waits return ErrTimeout, wrapped.
package browsertest // import "github.com/agentaudit/agentaudit/internal/browsertest"
