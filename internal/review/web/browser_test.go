package web

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/browsertest"
	"github.com/agentaudit/agentaudit/internal/review"
)

// The pages in a real headless Chromium (internal/browsertest: skipped
// without one, failed under CI=true). Any console error fails a test:
// a Content-Security-Policy violation is one.

const wait = 10 * time.Second

func noConsoleErrors(t *testing.T, b *browsertest.Browser) {
	t.Helper()
	errs, err := b.ConsoleErrors()
	require.NoError(t, err)
	assert.Empty(t, errs, "console errors")
}

// submit clicks the filter form's button and waits for the page it loads
// to be whole (its footer comes last).
func submit(t *testing.T, b *browsertest.Browser) {
	t.Helper()
	_, err := b.Eval(`document.body.dataset.before = "1"`)
	require.NoError(t, err)
	require.NoError(t, b.Click(`form.filter button[type=submit]`))
	require.NoError(t, b.WaitFor(`body:not([data-before]) footer.foot`, wait))
}

func runIDs(t *testing.T, b *browsertest.Browser) []string {
	t.Helper()
	ids, err := b.VisibleTexts(`table.runs tr.run td.id`)
	require.NoError(t, err)
	return ids
}

func TestBrowserRunList(t *testing.T) {
	f := fixture()
	srv := httptest.NewServer(newHandler(f, ""))
	t.Cleanup(srv.Close)
	b := browsertest.Shared(t)

	require.NoError(t, b.Open(srv.URL+"/"))
	ids := runIDs(t, b)
	require.Len(t, ids, len(f.timelines))
	assert.Equal(t, idCompleted, ids[0])
	labels, err := b.VisibleTexts(`table.runs tr.run .status`)
	require.NoError(t, err)
	assert.Equal(t, []string{"completed", "failed", "in progress", "awaiting approval", "abandoned", "completed", "completed", "completed"}, labels)
	badges, err := b.VisibleTexts(`table.runs tr.run .badge`)
	require.NoError(t, err)
	assert.Equal(t, "✗ 2 violations", badges[5])
	assert.Equal(t, "✓ intact", badges[0])
	screenshot(t, b, "runs.png")
	noConsoleErrors(t, b)

	// Filter by status through the form.
	require.NoError(t, b.Click(`input[name=status][value=failed]`))
	require.NoError(t, b.Click(`input[name=status][value=awaiting_approval]`))
	submit(t, b)
	assert.Equal(t, []string{idFailed, idAwaiting}, runIDs(t, b))
	search, err := b.Eval(`return location.search`)
	require.NoError(t, err)
	assert.Equal(t, "?status=awaiting_approval&status=failed&q=&agent=&approver=&target_system=&since=&until=", search)
	noConsoleErrors(t, b)

	// Search by text, the statuses cleared.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Type(`input[name=q]`, "clearbit"))
	submit(t, b)
	assert.Equal(t, []string{idCompleted}, runIDs(t, b))
	assert.Equal(t, "clearbit", f.lastFilter().Text)

	require.NoError(t, b.Type(`input[name=q]`, "no such run anywhere"))
	submit(t, b)
	assert.Empty(t, runIDs(t, b))
	empty, err := b.VisibleTexts(`p.empty`)
	require.NoError(t, err)
	assert.Equal(t, []string{"No run matches these filters."}, empty)

	// The count links filter too.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Click(`nav.counts a[href="/?status=abandoned"]`))
	require.NoError(t, b.WaitText(`nav.counts a.current`, "abandoned", wait))
	assert.Equal(t, []string{idAbandoned}, runIDs(t, b))

	// A bad date says why, and keeps the form.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Type(`input[name=since]`, "last tuesday"))
	submit(t, b)
	msg, err := b.VisibleTexts(`p.error`)
	require.NoError(t, err)
	require.Len(t, msg, 1)
	assert.Contains(t, msg[0], `since "last tuesday" is neither an RFC 3339 time`)
	// A 400 answer is a failed load, which the browser logs; nothing else.
	errs, err := b.ConsoleErrors()
	require.NoError(t, err)
	for _, e := range errs {
		assert.Contains(t, e, "status of 400")
	}
}

func TestBrowserRunPage(t *testing.T) {
	f := fixture()
	srv := httptest.NewServer(newHandler(f, ""))
	t.Cleanup(srv.Close)
	b := browsertest.Shared(t)

	// Follow the link from the list.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Click(`table.runs a[href="/runs/`+idCompleted+`"]`))
	require.NoError(t, b.WaitFor(`ol.timeline`, wait))
	title, err := b.VisibleTexts(`h1`)
	require.NoError(t, err)
	assert.Equal(t, []string{"Run " + idCompleted}, title)

	// Every step, in order, indented by depth.
	want := f.timelines[0].Steps
	actions, err := b.VisibleTexts(`ol.timeline > li.step .step-head .action`)
	require.NoError(t, err)
	numbers, err := b.VisibleTexts(`ol.timeline > li.step .step-head .n`)
	require.NoError(t, err)
	require.Len(t, actions, len(want))
	for i, s := range want {
		assert.Equal(t, s.ActionType, actions[i])
		assert.Equal(t, strconv.Itoa(i+1), numbers[i])
	}
	lefts, err := b.Eval(`return Array.from(document.querySelectorAll("ol.timeline > li.step"), e => e.getBoundingClientRect().left)`)
	require.NoError(t, err)
	left := lefts.([]any)
	for i := range want {
		for j := range want {
			switch {
			case want[i].Depth < want[j].Depth:
				assert.Less(t, left[i].(float64)+10, left[j].(float64), "step %d (depth %d) left of step %d (depth %d)", i+1, want[i].Depth, j+1, want[j].Depth)
			case want[i].Depth == want[j].Depth:
				assert.Equal(t, left[i], left[j])
			}
		}
	}
	change, err := b.VisibleTexts(`#step-5 dd.change`)
	require.NoError(t, err)
	require.Len(t, change, 1)
	assert.Regexp(t, `previous jane@olddomain\.com\s*→\s*proposed jane@newdomain\.com`, change[0])
	problems, err := b.VisibleTexts(`#step-5 dd.problems li`)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"audit.execution.id: defaulted — defaulted to trace id",
		"audit.value.proposed: truncated (originally 70000 bytes) sha256 ab12",
	}, problems)
	verdict, err := b.VisibleTexts(`.verdict`)
	require.NoError(t, err)
	assert.Equal(t, []string{"✓ Intact — signed checkpoint at size 42 by key agentaudit-test (a1b2c3d4)"}, verdict)

	// Who sent each step; the step another service sent, which the senders
	// policy flagged, and the step sent unauthenticated stand out.
	senders, err := b.VisibleTexts(`ol.timeline > li.step dd.sender`)
	require.NoError(t, err)
	assert.Equal(t, []string{
		senderCRM, senderCRM,
		senderBilling + " may not write for this agent (sender_mismatch, see Validation)",
		senderCRM, senderCRM,
		"no sender not authenticated, while other steps of this run were",
		senderCRM,
	}, senders)
	summary, err := b.VisibleTexts(`.summary .senders dd`)
	require.NoError(t, err)
	assert.Equal(t, []string{senderCRM + " (5 steps), " + senderBilling + " (1 step) · 1 step without a sender · 1 sender mismatch"}, summary)
	flagged, err := b.Eval(`return Array.from(document.querySelectorAll("ol.timeline > li.step.flagged"), e => [e.id, e.querySelector(".step-head .badge").innerText, getComputedStyle(e).borderLeftColor])`)
	require.NoError(t, err)
	assert.Equal(t, []any{
		[]any{"step-3", "⚠ sender mismatch", "rgb(125, 78, 0)"},
		[]any{"step-6", "⚠ no sender", "rgb(125, 78, 0)"},
	}, flagged, "flagged in the warning colour")
	screenshot(t, b, "run.png")
	noConsoleErrors(t, b)

	// The tampered run says so, at the top and at the step.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Click(`table.runs a[href="/runs/`+idTampered+`"]`))
	require.NoError(t, b.WaitText(`.verdict.bad`, "Not intact", wait))
	verdict, err = b.VisibleTexts(`.verdict.bad`)
	require.NoError(t, err)
	require.Len(t, verdict, 1)
	for _, s := range []string{"Not intact: 2 violations found", "hash_mismatch", "missing_file", "17–19", "trusted on first use"} {
		assert.Contains(t, verdict[0], s)
	}
	tampered, err := b.VisibleTexts(`li.step.tampered`)
	require.NoError(t, err)
	require.Len(t, tampered, 1)
	assert.Contains(t, tampered[0], "✗ 1 violation")
	assert.Contains(t, tampered[0], "hash_mismatch")
	color, err := b.Eval(`return getComputedStyle(document.querySelector("li.step.tampered")).borderLeftColor`)
	require.NoError(t, err)
	assert.Equal(t, "rgb(164, 14, 38)", color, "the tampered step is marked in red")
	noConsoleErrors(t, b)

	// The hostile run: its odd id reaches its page, values show marks, and
	// the 1 MiB value is folded until opened.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Click(`table.runs a[href^="/runs/run%2F1"]`))
	require.NoError(t, b.WaitFor(`ol.timeline`, wait))
	path, err := b.Eval(`return location.pathname`)
	require.NoError(t, err)
	assert.Equal(t, runHref(weirdID), path)
	h1, err := b.VisibleTexts(`h1`)
	require.NoError(t, err)
	assert.Equal(t, []string{"Run run/1 ?a=b#frag %2F<script>alert(1)</script>␀[U+202E]evil ملف"}, h1)
	n, err := b.Count(`script`)
	require.NoError(t, err)
	assert.Zero(t, n)
	folded, err := b.VisibleTexts(`#step-2 dd.change .to .full`)
	require.NoError(t, err)
	assert.Empty(t, folded, "folded")
	require.NoError(t, b.Click(`#step-2 dd.change .to details.long > summary`))
	opened, err := b.Eval(`const t = document.querySelector("#step-2 dd.change .to .full").innerText; return [t.length, t.slice(-16)]`)
	require.NoError(t, err)
	assert.Equal(t, []any{float64(len(bigValue)), "END-OF-BIG-VALUE"}, opened)
	noConsoleErrors(t, b)

	// The ".." run, which no path segment can name.
	require.NoError(t, b.Open(srv.URL+"/"))
	require.NoError(t, b.Click(`table.runs a[href="/run?id=.."]`))
	require.NoError(t, b.WaitFor(`ol.timeline`, wait))
	h1, err = b.VisibleTexts(`h1`)
	require.NoError(t, err)
	assert.Equal(t, []string{"Run .."}, h1)
	noConsoleErrors(t, b)
}

func TestBrowserToken(t *testing.T) {
	const token = "tok en/+?&=" // survives the query only when escaped
	f := fixture()
	srv := httptest.NewServer(newHandler(f, token))
	t.Cleanup(srv.Close)
	b := browsertest.Shared(t)

	require.NoError(t, b.Open(srv.URL+"/runs/"+idCompleted+"?"+url.Values{"token": {token}}.Encode()))
	href, err := b.Eval(`return location.href`)
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/runs/"+idCompleted, href, "the token left the address bar")
	require.NoError(t, b.WaitFor(`ol.timeline`, wait))
	cookie, err := b.Eval(`return document.cookie`)
	require.NoError(t, err)
	assert.Equal(t, "", cookie, "HttpOnly: no script reads it")

	// The cookie carries on: links and a fresh load.
	require.NoError(t, b.Click(`p.crumbs a`))
	require.NoError(t, b.WaitFor(`table.runs`, wait))
	require.NoError(t, b.Open(srv.URL+"/runs/"+idFailed))
	require.NoError(t, b.WaitFor(`ol.timeline`, wait))
	noConsoleErrors(t, b)
}

func TestBrowserReport(t *testing.T) {
	f := fixture()
	path := filepath.Join(t.TempDir(), "report.html")
	out, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, Report(out, f.timelines, ReportMeta{Target: f.target, Generated: now(), Command: "auditctl export --format html /var/audit-data"}))
	require.NoError(t, out.Close())

	b := browsertest.Shared(t)
	require.NoError(t, b.Open(browsertest.FileURL(path)))
	sections, err := b.Count(`section.run-report`)
	require.NoError(t, err)
	assert.Equal(t, len(f.timelines), sections)
	var want []string
	for _, tl := range f.timelines {
		for _, s := range tl.Steps {
			want = append(want, tl.ExecutionID+" "+strconv.FormatInt(s.Seq, 10))
		}
	}
	got, err := b.Eval(`return Array.from(document.querySelectorAll("section.run-report li.step"), e =>
		e.closest("section").querySelector("h2 .id").textContent + " " + e.querySelector(".entry").textContent.match(/· seq (\d+) ·/)[1])`)
	require.NoError(t, err)
	var gotS []string
	for _, g := range got.([]any) {
		gotS = append(gotS, g.(string))
	}
	// The ids' control characters show as marks in the page.
	for i := range want {
		want[i] = plainMarks(want[i])
	}
	assert.Equal(t, want, gotS)
	// Everything visible, nothing folded: the 1 MiB value is on the page.
	visible, err := b.Eval(`return Array.from(document.querySelectorAll(".full")).every(e => e.checkVisibility())`)
	require.NoError(t, err)
	assert.Equal(t, true, visible)
	big, err := b.Eval(`return document.body.innerText.includes("END-OF-BIG-VALUE")`)
	require.NoError(t, err)
	assert.Equal(t, true, big)
	// Who sent each step, and the flags, as on the run page.
	senders, err := b.VisibleTexts(`#run-0 li.step dd.sender`)
	require.NoError(t, err)
	require.Len(t, senders, len(f.timelines[0].Steps))
	assert.Equal(t, senderCRM, senders[0])
	assert.Equal(t, senderBilling+" may not write for this agent (sender_mismatch, see Validation)", senders[2])
	badges, err := b.VisibleTexts(`#run-0 li.step.flagged .step-head .badge`)
	require.NoError(t, err)
	assert.Equal(t, []string{"⚠ sender mismatch", "⚠ no sender"}, badges)
	summary, err := b.VisibleTexts(`#run-0 .summary .senders dd`)
	require.NoError(t, err)
	assert.Equal(t, []string{senderCRM + " (5 steps), " + senderBilling + " (1 step) · 1 step without a sender · 1 sender mismatch"}, summary)
	// Printing starts each run on a new page; in black and white a flagged
	// step keeps a mark of its own.
	assert.Equal(t, "page", printStyle(t, b, ".run-report", "break-before"))
	assert.Equal(t, "dashed", printStyle(t, b, ".step.flagged:not(.tampered)", "border-left-style"))
	noConsoleErrors(t, b)
}

// printStyle is the value of property in the page's print rule for
// selector; nil when there is none.
func printStyle(t *testing.T, b *browsertest.Browser, selector, property string) any {
	t.Helper()
	v, err := b.Eval(`for (const r of document.styleSheets[0].cssRules) {
		if (r.media && r.media.mediaText === "print") {
			for (const s of r.cssRules) if (s.selectorText === arguments[0]) return s.style.getPropertyValue(arguments[1]);
		}
	} return null`, selector, property)
	require.NoError(t, err)
	return v
}

// plainMarks is s as markText shows it, in text.
func plainMarks(s string) string {
	var b strings.Builder
	walkMarks(s, func(t string) { b.WriteString(t) }, func(m, _ string) { b.WriteString(m) })
	return b.String()
}

// screenshot writes a full-page PNG named name to $AGENTAUDIT_SCREENSHOTS,
// when it is set (for the README).
func screenshot(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	dir := os.Getenv("AGENTAUDIT_SCREENSHOTS")
	if dir == "" {
		return
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, b.FullPageScreenshot(filepath.Join(dir, name)))
	t.Logf("screenshot: %s", filepath.Join(dir, name))
}

var _ review.Reviewer = (*fakeReviewer)(nil)
