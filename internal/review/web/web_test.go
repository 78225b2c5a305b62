package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/html"

	"github.com/agentaudit/agentaudit/internal/review"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newHandler(f *fakeReviewer, token string) http.Handler {
	return Handler(f, Options{Token: token, Now: now, AbandonAfter: 24 * time.Hour, Version: "v0.test"})
}

// do serves one request addressed to 127.0.0.1, as a browser on the same
// machine sends it.
func do(h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Host = "127.0.0.1:8080"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestStatusCodes(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")
	down := newHandler(&fakeReviewer{target: "/var/audit-data", fail: errTrailDown}, "")
	for _, tc := range []struct {
		name, method, target string
		h                    http.Handler
		want                 int
		body                 string
	}{
		{"list", "GET", "/", h, 200, "Runs"},
		{"list HEAD", "HEAD", "/", h, 200, ""},
		{"run", "GET", "/runs/" + idCompleted, h, 200, idCompleted},
		{"run HEAD", "HEAD", "/runs/" + idCompleted, h, 200, ""},
		{"unknown run", "GET", "/runs/exec-nope", h, 404, "exec-nope"},
		{"unknown run export", "GET", "/runs/exec-nope/export.csv", h, 404, "exec-nope"},
		{"unknown export format", "GET", "/runs/" + idCompleted + "/export.xml", h, 404, "export.html"},
		{"unknown page", "GET", "/favicon.ico", h, 404, "No such page"},
		{"run with trailing slash", "GET", "/runs/" + idCompleted + "/", h, 404, "No such page"},
		{"run path below", "GET", "/runs/" + idCompleted + "/export.csv/x", h, 404, "No such page"},
		{"empty run segment", "GET", "/runs/", h, 404, "No such page"},
		{"query route needs id", "GET", "/run", h, 404, "No such page"},
		{"POST", "POST", "/", h, 405, "read-only"},
		{"PUT run", "PUT", "/runs/" + idCompleted, h, 405, "read-only"},
		{"DELETE", "DELETE", "/runs/" + idCompleted, h, 405, "read-only"},
		{"OPTIONS", "OPTIONS", "/", h, 405, "read-only"},
		{"PATCH export", "PATCH", "/runs/" + idCompleted + "/export.csv", h, 405, "read-only"},
		{"trail down: list", "GET", "/", down, 500, "connection refused"},
		{"trail down: run", "GET", "/runs/x", down, 500, "connection refused"},
		{"trail down: export", "GET", "/runs/x/export.html", down, 500, "connection refused"},
		{"bad since", "GET", "/?since=yesterday", h, 400, "neither an RFC 3339 time"},
		{"bad status", "GET", "/?status=done", h, 400, "is not one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.h, tc.method, tc.target)
			assert.Equal(t, tc.want, rec.Code)
			has(t, rec.Body.String(), tc.body)
			assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
			if tc.want == 405 {
				assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
			}
			if tc.method == "HEAD" {
				assert.Empty(t, rec.Body.String())
				assert.NotEqual(t, "0", rec.Header().Get("Content-Length"))
			}
			hasNot(t, rec.Body.String(), "goroutine")
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := fixture()
	for _, tc := range []struct {
		name    string
		h       http.Handler
		target  string
		method  string
		headers []string
	}{
		{"page", newHandler(f, ""), "/", "GET", nil},
		{"run", newHandler(f, ""), "/runs/" + idTampered, "GET", nil},
		{"export", newHandler(f, ""), "/runs/" + idCompleted + "/export.jsonl", "GET", nil},
		{"404", newHandler(f, ""), "/nope", "GET", nil},
		{"405", newHandler(f, ""), "/", "POST", nil},
		{"401", newHandler(f, "s3cret"), "/", "GET", nil},
		{"redirect", newHandler(f, "s3cret"), "/?token=s3cret", "GET", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.h, tc.method, tc.target, tc.headers...)
			hdr := rec.Header()
			assert.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
			assert.Equal(t, "no-referrer", hdr.Get("Referrer-Policy"))
			assert.Equal(t, "DENY", hdr.Get("X-Frame-Options"))
			assert.Equal(t, "no-store", hdr.Get("Cache-Control"))
			csp := hdr.Get("Content-Security-Policy")
			assert.True(t, strings.HasPrefix(csp, "default-src 'none'; style-src 'sha256-"), csp)
			has(t, csp, "img-src data:")
			has(t, csp, "frame-ancestors 'none'")
			hasNot(t, csp, "script-src")
			hasNot(t, csp, "unsafe")
		})
	}
}

// TestStyleHash: the policy allows exactly the stylesheet the pages carry,
// and the pages carry no other style and no script.
func TestStyleHash(t *testing.T) {
	f := fixture()
	rec := do(newHandler(f, ""), "GET", "/runs/"+idCompleted)
	require.Equal(t, 200, rec.Code)
	body := rec.Body.String()
	styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(body, -1)
	require.Len(t, styles, 1)
	sum := sha256.Sum256([]byte(styles[0][1]))
	has(t, rec.Header().Get("Content-Security-Policy"), "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		assert.NotEqual(t, "script", n.Data)
		for _, a := range n.Attr {
			assert.NotEqual(t, "style", a.Key, "inline style attributes need 'unsafe-inline'")
			assert.False(t, strings.HasPrefix(a.Key, "on"), "event handler attribute %s", a.Key)
		}
	}
}

func TestHostCheck(t *testing.T) {
	f := fixture()
	for _, tc := range []struct {
		host  string
		token string
		want  int
	}{
		{"127.0.0.1:8080", "", 200},
		{"[::1]:8080", "", 200},
		{"localhost:8080", "", 200},
		{"LOCALHOST.", "", 200},
		{"review.localhost:8080", "", 200},
		{"192.168.1.7", "", 200},
		{"rebind.attacker.example:8080", "", 403},
		{"localhost.attacker.example", "", 403},
		{"review.internal.example:8443", "s3cret", 200}, // with a token, any name
	} {
		t.Run(tc.host, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = tc.host
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			newHandler(f, tc.token).ServeHTTP(rec, req)
			assert.Equal(t, tc.want, rec.Code)
			if tc.want == 403 {
				hasNot(t, rec.Body.String(), f.target, "a refused request learns nothing of the trail")
			}
		})
	}
}

func TestToken(t *testing.T) {
	const token = "tok-3f9a+/= ;\"x" // characters no cookie may hold verbatim
	f := fixture()
	h := newHandler(f, token)

	t.Run("none", func(t *testing.T) {
		rec := do(h, "GET", "/runs/"+idCompleted)
		assert.Equal(t, 401, rec.Code)
		assert.Equal(t, `Bearer realm="auditctl serve"`, rec.Header().Get("WWW-Authenticate"))
		hasNot(t, rec.Body.String(), idCompleted)
		hasNot(t, rec.Body.String(), f.target)
		assert.Zero(t, f.calls())
	})
	t.Run("bearer", func(t *testing.T) {
		assert.Equal(t, 200, do(h, "GET", "/", "Authorization", "Bearer "+token).Code)
		assert.Equal(t, 200, do(h, "GET", "/", "Authorization", "bearer "+token).Code)
		assert.Equal(t, 401, do(h, "GET", "/", "Authorization", "Bearer "+token+"x").Code)
		assert.Equal(t, 401, do(h, "GET", "/", "Authorization", "Bearer "+token[:5]).Code)
		assert.Equal(t, 401, do(h, "GET", "/", "Authorization", "Basic "+token).Code)
		assert.Equal(t, 401, do(h, "GET", "/", "Authorization", token).Code)
	})
	t.Run("query sets cookie and redirects without it", func(t *testing.T) {
		target := "/runs/" + url.PathEscape(weirdID) + "?" + url.Values{"token": {token}, "x": {"1"}}.Encode()
		rec := do(h, "GET", target)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		assert.Equal(t, "/runs/"+url.PathEscape(weirdID)+"?x=1", rec.Header().Get("Location"))
		cookies := rec.Result().Cookies()
		require.Len(t, cookies, 1)
		c := cookies[0]
		assert.Equal(t, "agentaudit_token", c.Name)
		assert.True(t, c.HttpOnly)
		assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
		assert.Equal(t, "/", c.Path)
		hasNot(t, c.Value, "tok-3f9a", "the cookie holds a digest, not the token")

		// The cookie alone lets the browser in.
		rec = do(h, "GET", "/runs/"+url.PathEscape(weirdID)+"?x=1", "Cookie", c.Name+"="+c.Value)
		assert.Equal(t, 200, rec.Code)
		rec = do(h, "GET", "/", "Cookie", c.Name+"="+c.Value[:len(c.Value)-1]+"0")
		assert.Equal(t, 401, rec.Code)
		rec = do(h, "GET", "/", "Cookie", c.Name+"="+token)
		assert.Equal(t, 401, rec.Code, "the token itself is not the cookie")
	})
	t.Run("query redirect to the root", func(t *testing.T) {
		rec := do(h, "GET", "/?"+url.Values{"token": {token}}.Encode())
		require.Equal(t, http.StatusSeeOther, rec.Code)
		assert.Equal(t, "/", rec.Header().Get("Location"))
	})
	t.Run("query redirect stays on the server", func(t *testing.T) {
		rec := do(h, "GET", "//attacker.example/?"+url.Values{"token": {token}}.Encode())
		require.Equal(t, http.StatusSeeOther, rec.Code)
		assert.Equal(t, "/", rec.Header().Get("Location"))
	})
	t.Run("wrong query token", func(t *testing.T) {
		rec := do(h, "GET", "/?token=wrong")
		assert.Equal(t, 401, rec.Code)
		assert.Empty(t, rec.Result().Cookies())
		rec = do(h, "GET", "/?token=wrong", "Authorization", "Bearer "+token)
		assert.Equal(t, 401, rec.Code, "a wrong token in the URL is refused even with a good header")
	})
	t.Run("no token configured ignores credentials", func(t *testing.T) {
		rec := do(newHandler(f, ""), "GET", "/?token=anything")
		assert.Equal(t, 200, rec.Code)
	})
}

func TestFiltersReachReviewer(t *testing.T) {
	day := func(d int) *time.Time { v := time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC); return &v }
	exact := time.Date(2026, 3, 9, 14, 0, 0, 500_000_000, time.UTC)
	for _, tc := range []struct {
		query string
		want  review.Filter
	}{
		{"", review.Filter{}},
		{"q=Contact+%2348291", review.Filter{Text: "Contact #48291"}},
		{"q=++padded++", review.Filter{Text: "padded"}},
		{"agent=crm-agent", review.Filter{Agent: "crm-agent"}},
		{"approver=ops%40company.com", review.Filter{Approver: "ops@company.com"}},
		{"target_system=HubSpot+CRM", review.Filter{TargetSystem: "HubSpot CRM"}},
		{"since=2026-03-01", review.Filter{Since: day(1)}},
		{"until=2026-03-09", review.Filter{Until: day(10)}}, // through the end of that day
		{"since=2026-03-09T16:00:00.5%2B02:00", review.Filter{Since: &exact}},
		{"until=2026-03-09T14:00:00.5Z", review.Filter{Until: &exact}},
		{"status=failed&status=completed&agent=a&approver=b&target_system=c&q=d&since=2026-03-01&until=2026-03-02",
			review.Filter{Agent: "a", Approver: "b", TargetSystem: "c", Text: "d", Since: day(1), Until: day(3)}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			f := fixture()
			rec := do(newHandler(f, ""), "GET", "/?"+tc.query)
			require.Equal(t, 200, rec.Code, rec.Body.String())
			assert.Equal(t, tc.want, f.lastFilter())
			assert.Equal(t, 1, f.calls())
		})
	}
	t.Run("invalid filters do not query", func(t *testing.T) {
		f := fixture()
		rec := do(newHandler(f, ""), "GET", "/?since=2026-03-09&until=2026-03-01&status=nope&q=kept")
		assert.Equal(t, 400, rec.Code)
		assert.Zero(t, f.calls())
		body := rec.Body.String()
		has(t, body, "since must be before until")
		has(t, body, `status &#34;nope&#34; is not one of`)
		has(t, body, `value="kept"`, "the form keeps what was typed")
	})
}

// TestStatusFilter: the statuses are picked from one answer, which also
// gives the counts of every status.
func TestStatusFilter(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")
	rows := func(body string) []string {
		return regexp.MustCompile(`<tr class="run">\s*<td class="mono id"><a href="([^"]*)"`).FindAllString(body, -1)
	}
	all := do(h, "GET", "/").Body.String()
	assert.Len(t, rows(all), len(f.timelines))
	has(t, all, "no end entry, and nothing recorded for 24 hours.")

	body := do(h, "GET", "/?status=failed&status=abandoned").Body.String()
	got := rows(body)
	require.Len(t, got, 2)
	has(t, got[0], idFailed)
	has(t, got[1], idAbandoned)
	assert.Empty(t, f.lastFilter().Statuses)
	// The counts cover every status still, and link to one status each,
	// keeping the other filters.
	for status, n := range map[string]int{"in_progress": 1, "awaiting_approval": 1, "completed": 4, "failed": 1, "abandoned": 1} {
		assert.Regexp(t, `href="/\?status=`+status+`"><span class="status st-`+status+`">[^<]+</span> <span class="num">`+strconv.Itoa(n)+`</span>`, body)
	}
	has(t, body, `value="failed" checked`)
	hasNot(t, body, `value="completed" checked`)

	body = do(h, "GET", "/?agent=crm-agent&status=completed").Body.String()
	has(t, body, `href="/?agent=crm-agent&amp;status=in_progress"`)
	has(t, body, `href="/?agent=crm-agent"`, "the all link keeps the agent")

	empty := do(h, "GET", "/?q=no-such-thing").Body.String()
	assert.Empty(t, rows(empty))
	has(t, empty, "No run matches these filters.")
	none := do(newHandler(&fakeReviewer{target: "/empty"}, ""), "GET", "/").Body.String()
	has(t, none, "The trail holds no runs yet.")
}

func TestPaging(t *testing.T) {
	f := &fakeReviewer{target: "/t"}
	for i := range pageSize + 3 {
		id := "exec-" + strings.Repeat("x", 3) + "-" + time.Duration(i).String()
		f.timelines = append(f.timelines, timeline(run(id, review.StatusCompleted, t0, tp(t0), nil), nil, review.Integrity{Intact: true}))
	}
	h := newHandler(f, "")
	first := do(h, "GET", "/?agent=crm-agent").Body.String()
	assert.Equal(t, pageSize, strings.Count(first, `<tr class="run">`))
	has(t, first, "showing 1–500")
	has(t, first, `href="/?agent=crm-agent&amp;offset=500">older runs`)
	second := do(h, "GET", "/?agent=crm-agent&offset=500").Body.String()
	assert.Equal(t, 3, strings.Count(second, `<tr class="run">`))
	has(t, second, "showing 501–503")
	has(t, second, `href="/?agent=crm-agent">← newer runs`)
	has(t, second, "exec-xxx-502ns")
}

// TestLinksRoundTrip follows every run link of the list: each id, however
// odd, reaches its own page and exports.
func TestLinksRoundTrip(t *testing.T) {
	f := fixture()
	srv := httptest.NewServer(newHandler(f, ""))
	defer srv.Close()
	list := get(t, srv.URL+"/")
	hrefs := regexp.MustCompile(`<td class="mono id"><a href="([^"]*)"`).FindAllStringSubmatch(list, -1)
	require.Len(t, hrefs, len(f.timelines))
	for i, m := range hrefs {
		id := f.timelines[i].ExecutionID
		href := html.UnescapeString(m[1])
		page := get(t, srv.URL+href)
		has(t, page, `<ol class="timeline">`, "run %q", id)
		// The page's export links reach the same run.
		ex := regexp.MustCompile(`<a href="([^"]*)">JSONL</a>`).FindStringSubmatch(page)
		require.NotNil(t, ex)
		lines := strings.Split(strings.TrimSpace(get(t, srv.URL+html.UnescapeString(ex[1]))), "\n")
		require.Len(t, lines, len(f.timelines[i].Steps), "run %q", id)
		var s review.Step
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &s))
		assert.Equal(t, id, s.ExecutionID)
	}
	assert.Equal(t, "/runs/run%2F1%20%3Fa=b%23frag%20%252F%3Cscript%3Ealert%281%29%3C%2Fscript%3E%00%E2%80%AEevil%20%D9%85%D9%84%D9%81", runHref(weirdID))
	assert.Equal(t, "/run?id=..", runHref(".."))
	assert.Equal(t, "/run/export.csv?id=.", exportHref(".", "csv"))
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, "GET %s: %s", u, b.String())
	return b.String()
}

func TestEscaping(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")
	for _, target := range []string{"/", "/runs/" + url.PathEscape(weirdID), "/runs/" + url.PathEscape(weirdID) + "/export.html"} {
		t.Run(target, func(t *testing.T) {
			rec := do(h, "GET", target)
			require.Equal(t, 200, rec.Code)
			body := rec.Body.String()
			for _, raw := range []string{"<script>", "<img src=x", "<b>bold", "\x00", "\u202e", "\u2066", "\u200b", `"><script`} {
				hasNot(t, body, raw)
			}
			has(t, body, "&lt;b&gt;bold agent&lt;/b&gt;")
			doc, err := html.Parse(strings.NewReader(body))
			require.NoError(t, err)
			for n := range doc.Descendants() {
				if n.Type == html.ElementNode {
					hasNot(t, []string{"script", "img", "b", "iframe", "object", "embed"}, n.Data)
				}
			}
		})
	}
	body := do(h, "GET", "/runs/"+url.PathEscape(weirdID)).Body.String()
	has(t, body, "&lt;script&gt;alert(&#39;result&#39;)&lt;/script&gt;")
	has(t, body, `<span class="ctl" title="control character U+0000">␀</span>`)
	has(t, body, `<span class="ctl" title="invisible or bidirectional-text control character">[U+202E]</span>`)
	has(t, body, "[U+200B]")
	has(t, body, "عربى نص")
	has(t, body, "END-OF-BIG-VALUE", "the whole 1 MiB value is there, folded")
	has(t, body, "(1.0 MiB)</span></summary>")
}

func TestMarkText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"<a href='x'>&", "&lt;a href=&#39;x&#39;&gt;&amp;"},
		{"tab\tand\nnewline\r\n", "tab\tand\nnewline\r\n"},
		{"nul\x00", `nul<span class="ctl" title="control character U+0000">␀</span>`},
		{"bell\a cr\r", `bell<span class="ctl" title="control character U+0007">␇</span> cr<span class="ctl" title="control character U+000D">␍</span>`},
		{"del\x7f", `del<span class="ctl" title="control character U+007F">␡</span>`},
		{"c1\u0085", `c1<span class="ctl" title="control character">[U+0085]</span>`},
		{"a\u202eb\u2067c\u200fd\ufeff", `a<span class="ctl" title="invisible or bidirectional-text control character">[U+202E]</span>b` +
			`<span class="ctl" title="invisible or bidirectional-text control character">[U+2067]</span>c` +
			`<span class="ctl" title="invisible or bidirectional-text control character">[U+200F]</span>d` +
			`<span class="ctl" title="invisible or bidirectional-text control character">[U+FEFF]</span>`},
		{"bad\xff\xfe utf8", `bad<span class="ctl" title="a byte that is not UTF-8">\xFF</span><span class="ctl" title="a byte that is not UTF-8">\xFE</span> utf8`},
		{"עברית ✓ 請求書", "עברית ✓ 請求書"},
	} {
		var b strings.Builder
		markText(&b, tc.in)
		assert.Equal(t, tc.want, b.String(), "%q", tc.in)
	}
}

func TestBlockText(t *testing.T) {
	short := string(blockText("short", true))
	assert.Equal(t, `<span class="v">short</span>`, short)
	assert.Equal(t, `<span class="none">(empty)</span>`, string(blockText("", true)))
	long := strings.Repeat("é", 300)
	folded := string(blockText(long, true))
	assert.True(t, strings.HasPrefix(folded, `<details class="long"><summary><span class="v">`+strings.Repeat("é", shortRunes)+`</span><span class="more">… (600 bytes)</span></summary>`), folded)
	has(t, folded, `<div class="v full">`+long+`</div>`)
	open := string(blockText(long, false))
	assert.Equal(t, `<div class="v full">`+long+`</div>`, open)
	lines := string(blockText("a\nb\nc\nd\ne", true))
	has(t, lines, "(9 bytes, 5 lines)")
}

func TestFormats(t *testing.T) {
	for ms, want := range map[float64]string{
		0.25: "0.250 ms", 12: "12 ms", 999.4: "999 ms", 1500: "1.50 s", 59_990: "59.99 s",
		61_000: "1 min 01 s", 3_600_000: "1 h 00 min", 90_061_000: "1 d 01 h", -1500: "−1.50 s",
	} {
		assert.Equal(t, want, humanDuration(ms), "%v ms", ms)
	}
	assert.Equal(t, "—", formatDuration(nil))
	assert.Equal(t, "24 hours", spanText(24*time.Hour))
	assert.Equal(t, "90 minutes", spanText(90*time.Minute))
	assert.Equal(t, "1m30.5s", spanText(90500*time.Millisecond))
	assert.Equal(t, "2026-03-09T14:23:07.123Z", formatTime(t0.In(time.FixedZone("x", 3600))))
	assert.Equal(t, "2026-03-09T14:23:07.000Z", formatTime(time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)))
	assert.Equal(t, "run-exec-a7f3b2c1.csv", exportName(idCompleted, "csv"))
	assert.Equal(t, "run-run_1__a_b_frag__2F_script_alert_1___script___evil____.html", exportName(weirdID, "html"))
	assert.Equal(t, "run-run.jsonl", exportName("..", "jsonl"))
	assert.Equal(t, "'s3://b/my trail'", shellQuote("s3://b/my trail"))
	assert.Equal(t, "/var/audit-data", shellQuote("/var/audit-data"))
	assert.Equal(t, `'it'\''s'`, shellQuote("it's"))
}

func TestRunPage(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")

	body := do(h, "GET", "/runs/"+idCompleted).Body.String()
	// Every step, in the order given, with its depth.
	steps := regexp.MustCompile(`<li class="step in(\d+)[^"]*" id="step-(\d+)" data-depth="(\d+)">`).FindAllStringSubmatch(body, -1)
	require.Len(t, steps, 7)
	for i, m := range steps {
		assert.Equal(t, strconv.Itoa(i+1), m[2])
		assert.Equal(t, strconv.Itoa(f.timelines[0].Steps[i].Depth), m[3])
		assert.Equal(t, m[1], m[3])
	}
	for _, want := range []string{
		"Intact</strong> — signed checkpoint at size 42 by key <span class=\"mono\"><span class=\"v\">agentaudit-test</span></span> (<span class=\"mono\"><span class=\"v\">a1b2c3d4</span></span>)",
		"jane@olddomain.com", "jane@newdomain.com", "Email bounced; found updated address via Clearbit",
		"ops@company.com", "200 OK (field updated)",
		// The validation array, parsed.
		`<span class="v">audit.execution.id</span></span>: <strong><span class="v">defaulted</span></strong> — <span class="v">defaulted to trace id</span>`,
		"(originally 70000 bytes)",
		// Not a problem list: shown as stored.
		`not a list of problems, as stored:</span> <span class="v">not json at all &lt;b&gt;</span>`,
		// Verification.
		"<pre class=\"cmd\">auditctl verify /var/audit-data</pre>",
		"<pre class=\"cmd\">auditctl verify &#39;s3://audit-bucket/prod trail&#39;</pre>",
		`dt=2026-03-09/chain-a-00000000000000000030.parquet</span> <span class="sub">(entries proven)</span>`,
		"the file's entry hashes give the Merkle root its batch's signed checkpoint states",
		noteText[:30],
		`<a href="/runs/exec-a7f3b2c1/export.html">HTML report</a>`,
		`<a href="/runs/exec-a7f3b2c1/export.jsonl">JSONL</a>`,
		`<a href="/runs/exec-a7f3b2c1/export.csv">CSV</a>`,
		"2026-03-09T14:23:07.123Z", "750 ms",
	} {
		has(t, body, want)
	}

	tampered := do(h, "GET", "/runs/"+idTampered).Body.String()
	for _, want := range []string{
		`<div class="verdict bad">`, "<strong>Not intact</strong>: 2 violations found",
		"hash_mismatch", "missing_file", "17–19", "entry_hash 00ff… is not the SHA-256 of the row",
		`<li class="step in1 tampered" id="step-2"`,
		"Checked with keys published beside the trail (trusted on first use)",
		`<span class="badge bad" title="verification found something wrong with the files holding this run"><span aria-hidden="true">✗</span> 2 violations</span>`,
	} {
		has(t, tampered, want)
	}

	// A step names its agent only when it is not the run's.
	hasNot(t, body[strings.Index(body, `<ol class="timeline">`):], "<dt>Agent</dt>")
	has(t, do(h, "GET", "/runs/"+idFailed).Body.String(), "<dt>Agent</dt><dd><span class=\"v\">crm-agent</span>")

	progress := do(h, "GET", "/runs/"+idProgress).Body.String()
	has(t, progress, "3 h 29 min before now", "time since the last activity, by Options.Now")
}

// TestSenders: who sent each step, as the collector authenticated it, on
// every step of a run with a sender and in its summary; a step without one
// in such a run, and a step the senders policy flagged, are marked.
func TestSenders(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")
	stepsOf := func(body string) []string {
		i := strings.Index(body, `<ol class="timeline">`)
		require.GreaterOrEqual(t, i, 0)
		return strings.Split(body[i:], `<li class="step `)[1:]
	}

	body := do(h, "GET", "/runs/"+idCompleted).Body.String()
	has(t, body, `<div class="senders"><dt>Sent by</dt><dd><span class="mono"><span class="v">CN=crm-agent,O=Example Corp</span></span> <span class="sub">(5 steps)</span>, `+
		`<span class="mono"><span class="v">svc-billing</span></span> <span class="sub">(1 step)</span> · <strong class="warn">1 step without a sender</strong> · <strong class="warn">1 sender mismatch</strong></dd></div>`)
	steps := stepsOf(body)
	require.Len(t, steps, 7)
	for i, st := range steps {
		has(t, st, `<dt>Sent by</dt><dd class="sender">`, "step %d", i+1)
		switch i + 1 {
		case 3:
			assert.True(t, strings.HasPrefix(st, `in1 flagged" id="step-3"`), st[:40])
			has(t, st, `<span class="badge warn" title="the collector's senders policy says this sender may not write for this agent"><span aria-hidden="true">⚠</span> sender mismatch</span>`)
			has(t, st, `<dd class="sender"><span class="mono"><span class="v">svc-billing</span></span> <strong class="warn">may not write for this agent</strong>`)
			has(t, st, `<strong><span class="v">sender_mismatch</span></strong> — <span class="v">sender &#34;svc-billing&#34; may not write for agent_name &#34;crm-agent&#34;</span>`)
			hasNot(t, st, "no sender")
		case 6:
			assert.True(t, strings.HasPrefix(st, `in2 flagged" id="step-6"`), st[:40])
			has(t, st, `<span class="badge warn" title="not authenticated, while other steps of this run were"><span aria-hidden="true">⚠</span> no sender</span>`)
			has(t, st, `<dd class="sender"><strong class="warn">no sender</strong> <span class="sub">not authenticated, while other steps of this run were</span></dd>`)
		default:
			hasNot(t, st[:40], "flagged", "step %d", i+1)
			hasNot(t, st, `badge warn`, "step %d", i+1)
			has(t, st, `<dd class="sender"><span class="mono"><span class="v">CN=crm-agent,O=Example Corp</span></span></dd>`, "step %d", i+1)
		}
	}

	// An entry of format version 1 has no sender column: said, not flagged.
	failed := do(h, "GET", "/runs/"+idFailed).Body.String()
	has(t, failed, `<dt>Sent by</dt><dd><span class="mono"><span class="v">billing-bot</span></span> <span class="sub">(2 steps)</span></dd>`)
	steps = stepsOf(failed)
	require.Len(t, steps, 3)
	has(t, steps[0], `<dd class="sender"><span class="none">none: an entry of format version 1, which has no sender column</span></dd>`)
	for _, st := range steps {
		hasNot(t, st, "flagged")
		hasNot(t, st, "badge warn")
	}

	// A run no step of which was authenticated says so once, in its summary.
	progress := do(h, "GET", "/runs/"+idProgress).Body.String()
	has(t, progress, `<dt>Sent by</dt><dd><span class="none">no authenticated sender</span></dd>`)
	for _, st := range stepsOf(progress) {
		hasNot(t, st, "Sent by")
		hasNot(t, st, "flagged")
	}

	// A sender is a value from the trail like any other.
	weird := do(h, "GET", "/runs/"+url.PathEscape(weirdID)).Body.String()
	has(t, weird, `<dd class="sender"><span class="mono"><span class="v">&lt;script&gt;alert(&#39;sender&#39;)&lt;/script&gt;<span class="ctl" title="invisible or bidirectional-text control character">[U+202E]</span>CN=x</span></span></dd>`)
}

// TestSenderStates: why a step has no sender, and what is flagged.
func TestSenderStates(t *testing.T) {
	end := t0.UnixNano()
	mismatch := `[{"field":"sender","problem":"sender_mismatch","detail":"sender \"a\" may not write for agent_id \"b\""}]`
	mk := func(sender *string, v1 bool, action string, validation *string) review.Step {
		s := review.Step{Sender: sender, ActionType: action, Validation: validation, EndTimeUnixNano: &end}
		if v1 {
			s.EndTimeUnixNano = nil
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		steps    []review.Step
		want     noSender // of the last step
		show     bool     // the last step says who sent it
		mismatch bool
		summary  senderSummary
	}{
		{"sent", []review.Step{mk(sp("a"), false, "read", nil)}, "", true, false,
			senderSummary{List: []senderCount{{"a", 1}}}},
		{"no sender anywhere", []review.Step{mk(nil, false, "read", nil), mk(nil, false, "write", nil)}, senderNone, false, false,
			senderSummary{}},
		{"missing", []review.Step{mk(sp("a"), false, "read", nil), mk(nil, false, "write", nil)}, senderMissing, true, false,
			senderSummary{List: []senderCount{{"a", 1}}, Missing: 1}},
		{"version 1", []review.Step{mk(sp("a"), false, "read", nil), mk(nil, true, "write", nil)}, senderV1, true, false,
			senderSummary{List: []senderCount{{"a", 1}}}},
		{"all version 1", []review.Step{mk(nil, true, "read", nil)}, senderV1, false, false,
			senderSummary{AllV1: true}},
		{"the collector's own", []review.Step{mk(sp("a"), false, "read", nil), mk(nil, false, "AgentAudit.loss", nil)}, senderOwn, true, false,
			senderSummary{List: []senderCount{{"a", 1}}}},
		{"a span's reserved action type", []review.Step{mk(sp("a"), false, "read", nil), mk(nil, false, "reserved:agentaudit.loss", nil)}, senderMissing, true, false,
			senderSummary{List: []senderCount{{"a", 1}}, Missing: 1}},
		{"mismatch", []review.Step{mk(sp("a"), false, "read", nil), mk(sp("b"), false, "read", sp(mismatch)), mk(sp("a"), false, "read", sp(mismatch))}, "", true, true,
			senderSummary{List: []senderCount{{"a", 2}, {"b", 1}}, Mismatches: 2}},
		{"mismatch without a sender", []review.Step{mk(nil, false, "read", sp(mismatch))}, senderNone, true, true,
			senderSummary{Mismatches: 1}},
		{"not a problem list", []review.Step{mk(sp("a"), false, "read", sp(`sender_mismatch`))}, "", true, false,
			senderSummary{List: []senderCount{{"a", 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := newSection(&review.Timeline{Steps: tc.steps}, time.Time{}, false, "")
			assert.Equal(t, tc.summary, sec.Senders)
			last := sec.Steps[len(sec.Steps)-1]
			assert.Equal(t, tc.want, last.NoSender)
			assert.Equal(t, tc.show, last.ShowSender)
			assert.Equal(t, tc.mismatch, last.SenderMismatch)
			assert.Equal(t, tc.mismatch || tc.want == senderMissing, last.Flagged())
		})
	}
	// What a run without a sender says of it in its summary.
	for want, steps := range map[string][]review.Step{
		`<span class="none">no authenticated sender</span>`:                  {mk(nil, false, "read", nil), mk(nil, true, "read", nil)},
		`<span class="none">no sender: format version 1 records none</span>`: {mk(nil, true, "read", nil)},
	} {
		var b bytes.Buffer
		require.NoError(t, runTmpl.ExecuteTemplate(&b, "senders", newSenderSummary(steps)))
		assert.Equal(t, want, b.String())
	}
}

func TestExports(t *testing.T) {
	f := fixture()
	h := newHandler(f, "")
	for _, tc := range []struct {
		ext, contentType, disposition string
	}{
		{"html", "text/html; charset=utf-8", `attachment; filename=run-exec-a7f3b2c1.html`},
		{"jsonl", "application/jsonl; charset=utf-8", `attachment; filename=run-exec-a7f3b2c1.jsonl`},
		{"csv", "text/csv; charset=utf-8", `attachment; filename=run-exec-a7f3b2c1.csv`},
	} {
		t.Run(tc.ext, func(t *testing.T) {
			rec := do(h, "GET", "/runs/"+idCompleted+"/export."+tc.ext)
			require.Equal(t, 200, rec.Code)
			assert.Equal(t, tc.contentType, rec.Header().Get("Content-Type"))
			assert.Equal(t, tc.disposition, rec.Header().Get("Content-Disposition"))
			var want bytes.Buffer
			steps := f.timelines[0].Steps
			switch tc.ext {
			case "jsonl":
				require.NoError(t, review.WriteJSONL(&want, steps))
				assert.Equal(t, want.String(), rec.Body.String())
			case "csv":
				require.NoError(t, review.WriteCSV(&want, steps))
				assert.Equal(t, want.String(), rec.Body.String())
				sc := bufio.NewScanner(rec.Body)
				n := 0
				for sc.Scan() {
					n++
				}
				assert.Equal(t, len(steps)+1, n)
			case "html":
				require.NoError(t, Report(&want, []*review.Timeline{f.timelines[0]}, ReportMeta{
					Target: f.target, Generated: now(), Command: "auditctl serve, GET /runs/exec-a7f3b2c1/export.html",
					Title: "Audit report: run " + idCompleted,
				}))
				assert.Equal(t, want.String(), rec.Body.String())
			}
		})
	}
	rec := do(h, "GET", "/run/export.csv?id=..")
	require.Equal(t, 200, rec.Code)
	has(t, rec.Body.String(), `,".."`)
	assert.Equal(t, "attachment; filename=run-run.csv", rec.Header().Get("Content-Disposition"))
}

func TestReport(t *testing.T) {
	f := fixture()
	var buf bytes.Buffer
	meta := ReportMeta{Target: f.target, Generated: now(), Command: "auditctl export --format html --status completed 's3://audit-bucket/prod trail'"}
	require.NoError(t, Report(&buf, f.timelines, meta))
	out := buf.String()

	doc, err := html.Parse(strings.NewReader(out))
	require.NoError(t, err)
	urlAttrs := map[string]bool{"src": true, "href": true, "action": true, "srcset": true, "poster": true, "data": true, "formaction": true, "background": true, "cite": true, "ping": true, "xlink:href": true}
	var styles, metaCSP, notes int
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		if n.Data == "pre" && n.FirstChild != nil && n.FirstChild.Data == noteText {
			notes++
		}
		hasNot(t, []string{"script", "iframe", "object", "embed", "img", "form", "base"}, n.Data)
		if n.Data == "style" {
			styles++
			hasNot(t, n.FirstChild.Data, "url(", "the stylesheet loads nothing")
			hasNot(t, n.FirstChild.Data, "@import")
		}
		if n.Data == "link" {
			assert.Equal(t, "data:,", attr(n, "href"), "the only link is the empty icon")
		}
		if n.Data == "meta" && attr(n, "http-equiv") == "Content-Security-Policy" {
			metaCSP++
			assert.True(t, strings.HasPrefix(attr(n, "content"), "default-src 'none'; style-src 'sha256-"))
		}
		for _, a := range n.Attr {
			assert.False(t, strings.HasPrefix(a.Key, "on"), "event handler %s", a.Key)
			assert.NotEqual(t, "style", a.Key)
			if urlAttrs[a.Key] {
				assert.True(t, strings.HasPrefix(a.Val, "#") || a.Val == "data:,", "%s=%q on <%s> is not a reference inside the report", a.Key, a.Val, n.Data)
			}
		}
	}
	assert.Equal(t, 1, styles)
	assert.Equal(t, 1, metaCSP)
	assert.Equal(t, len(f.timelines), notes, "each run's signed note, verbatim")
	hasNot(t, out, "<details", "nothing folded in the report")

	// Every run, every step, in order, with every value in full.
	pos := 0
	for _, tl := range f.timelines {
		for _, s := range tl.Steps {
			marker := `data-depth="` + strconv.Itoa(s.Depth) + `"`
			i := strings.Index(out[pos:], `<li class="step in`)
			require.GreaterOrEqual(t, i, 0, "step %d of %q", s.Seq, tl.ExecutionID)
			pos += i
			has(t, out[pos:pos+80], marker)
			has(t, out[pos:], " · seq "+strconv.FormatInt(s.Seq, 10)+" · span", "seq %d in order", s.Seq)
			pos++
		}
	}
	has(t, out, "END-OF-BIG-VALUE")
	has(t, out, strings.Repeat("0123456789abcdef", 1000))
	has(t, out, "auditctl verify /var/audit-data")
	has(t, out, "auditctl verify &#39;s3://audit-bucket/prod trail&#39;")
	has(t, out, "auditctl export --format html --status completed")
	has(t, out, "<h1><span class=\"v\">Audit report</span></h1>")
	has(t, out, "2026-03-09T15:53:07.123Z")
	assert.Equal(t, len(f.timelines), strings.Count(out, `<section class="run-report"`))
	has(t, out, "seq 30–41", "the checkpoint's batch range")
	// Who sent each step, and the flags, as on the run page.
	has(t, out, `<dt>Sent by</dt><dd><span class="mono"><span class="v">CN=crm-agent,O=Example Corp</span></span> <span class="sub">(5 steps)</span>`)
	assert.Equal(t, 7+3+2, strings.Count(out, `<dt>Sent by</dt><dd class="sender">`), "every step of the three runs with a sender")
	assert.Equal(t, 2+1, strings.Count(out, ` flagged" id="step-`), "the completed run's two, the hostile run's unauthenticated start")
	has(t, out, `<span aria-hidden="true">⚠</span> sender mismatch</span>`)
	has(t, out, `<span aria-hidden="true">⚠</span> no sender</span>`)
	has(t, out, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "the checkpoint's head")

	var empty bytes.Buffer
	require.NoError(t, Report(&empty, nil, ReportMeta{Title: "Nothing"}))
	has(t, empty.String(), "This report holds no runs.")
	assert.Error(t, Report(&empty, []*review.Timeline{nil}, ReportMeta{}))
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// has and hasNot check for a substring of a page and, failing, show the
// substring, not the page (pages run to a megabyte).
func has[S ~string | ~[]string](t *testing.T, body S, sub string, msg ...any) {
	t.Helper()
	switch b := any(body).(type) {
	case string:
		if !strings.Contains(b, sub) {
			t.Errorf("%q not found in %d bytes %v", sub, len(b), msg)
		}
	case []string:
		assert.Contains(t, b, sub, msg...)
	}
}

func hasNot[S ~string | ~[]string](t *testing.T, body S, sub string, msg ...any) {
	t.Helper()
	switch b := any(body).(type) {
	case string:
		if i := strings.Index(b, sub); i >= 0 {
			t.Errorf("%q found at %d: …%q… %v", sub, i, b[max(i-80, 0):min(i+80, len(b))], msg)
		}
	case []string:
		assert.NotContains(t, b, sub, msg...)
	}
}
