package web

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/review"
	"github.com/agentaudit/agentaudit/internal/verify"
)

//go:embed templates
var files embed.FS

// stylesheet is the one stylesheet of every page and of the report, inlined
// in a <style> element and allowed by its hash (styleHash).
var stylesheet = mustRead("templates/style.css")

// styleHash is the CSP source that allows exactly the stylesheet.
var styleHash = func() string {
	sum := sha256.Sum256([]byte(stylesheet))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// csp allows the inline stylesheet and data: images (the empty icon that
// keeps browsers from asking for /favicon.ico), and nothing else: no
// script, no outside resource, no frame.
var csp = "default-src 'none'; style-src " + styleHash + "; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// reportCSP is the report's own policy, in a <meta> element, so that even
// the file opened from disk can load nothing.
var reportCSP = "default-src 'none'; style-src " + styleHash + "; img-src data:; form-action 'none'; base-uri 'none'"

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Each page is the shared partials plus its own file.
var (
	runsTmpl   = parsePage("runs.html")
	runTmpl    = parsePage("run.html")
	errorTmpl  = parsePage("error.html")
	reportTmpl = parsePage("report.html")
)

func parsePage(name string) *template.Template {
	return template.Must(template.New(name).Funcs(funcs).ParseFS(files, "templates/partials.html", "templates/"+name))
}

var funcs = template.FuncMap{
	"css":        func() template.CSS { return template.CSS(stylesheet) },
	"ts":         formatTime,
	"tsp":        formatTimePtr,
	"tsw":        wrappableTime,
	"dur":        formatDuration,
	"runHref":    runHref,
	"exportHref": exportHref,
	"txt":        inlineText,
	"plain":      plainText,
	"txtp":       inlineTextPtr,
	"val":        blockText,
	"valp":       blockTextPtr,
	"plural":     plural,
	"seqs":       violationSeqs,
	"shell":      shellQuote,
	"status":     newStatusView,
}

// formatTime is UTC, RFC 3339 with milliseconds.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// wrappableTime is formatTime for a narrow table cell: it may wrap after
// the date, and nowhere else.
func wrappableTime(t any) template.HTML {
	var s string
	switch t := t.(type) {
	case time.Time:
		s = formatTime(t)
	case *time.Time:
		s = formatTimePtr(t)
	}
	date, clock, ok := strings.Cut(s, "T")
	if !ok {
		return template.HTML(template.HTMLEscapeString(s))
	}
	return template.HTML(`<span class="nw">` + date + `T</span><wbr><span class="nw">` + clock + `</span>`)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return formatTime(*t)
}

// formatDuration reads milliseconds the way a person says them.
func formatDuration(ms *float64) string {
	if ms == nil || math.IsNaN(*ms) || math.IsInf(*ms, 0) {
		return "—"
	}
	return humanDuration(*ms)
}

func humanDuration(ms float64) string {
	neg := ""
	if ms < 0 {
		neg, ms = "−", -ms
	}
	switch {
	case ms < 1:
		return neg + strconv.FormatFloat(ms, 'f', 3, 64) + " ms"
	case ms < 1000:
		return neg + strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	case ms < 60_000:
		return neg + strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	}
	s := int64(ms / 1000)
	switch {
	case s < 3600:
		return fmt.Sprintf("%s%d min %02d s", neg, s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%s%d h %02d min", neg, s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%s%d d %02d h", neg, s/86400, s%86400/3600)
	}
}

// spanText says a configured duration in words: "24 hours", "90 minutes".
func spanText(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour", "hours")
	case d > 0 && d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute", "minutes")
	}
	return d.String()
}

func statusLabel(s review.Status) string {
	switch s {
	case review.StatusInProgress:
		return "in progress"
	case review.StatusAwaitingApproval:
		return "awaiting approval"
	case "":
		return "unknown"
	}
	return string(s)
}

// statusClass is a CSS class for a known status, a neutral one otherwise.
func statusClass(s review.Status) string {
	for _, k := range review.Statuses {
		if s == k {
			return "st-" + string(s)
		}
	}
	return "st-other"
}

// runHref is the path of a run's page. The id is one percent-encoded path
// segment; "", "." and ".." cannot be one (browsers resolve dot segments,
// "%2e" included, before sending), so they go in the query.
func runHref(id string) string {
	if id == "" || id == "." || id == ".." {
		return "/run?id=" + url.QueryEscape(id)
	}
	return "/runs/" + url.PathEscape(id)
}

// exportHref is the path of a run's export in format ext (html, jsonl, csv).
func exportHref(id, ext string) string {
	if id == "" || id == "." || id == ".." {
		return "/run/export." + ext + "?id=" + url.QueryEscape(id)
	}
	return "/runs/" + url.PathEscape(id) + "/export." + ext
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// plural is "1 one" or "n many"; n is an int or an int64.
func plural(n any, one, many string) string {
	var k int64
	switch n := n.(type) {
	case int:
		k = int64(n)
	case int64:
		k = n
	}
	if k == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(k, 10) + " " + many
}

func formatBytes(n int) string {
	switch {
	case n < 1024:
		return plural(n, "byte", "bytes")
	case n < 1024*1024:
		return strconv.FormatFloat(float64(n)/1024, 'f', 1, 64) + " KiB"
	default:
		return strconv.FormatFloat(float64(n)/(1024*1024), 'f', 1, 64) + " MiB"
	}
}

// violationSeqs is a violation's seq or seq range, "" for a whole file.
func violationSeqs(v verify.Violation) string {
	if v.Seq == verify.NoSeq {
		return ""
	}
	if v.Through > v.Seq {
		return strconv.FormatInt(v.Seq, 10) + "–" + strconv.FormatInt(v.Through, 10)
	}
	return strconv.FormatInt(v.Seq, 10)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Values from the trail are shown, never acted on: markText escapes s for
// HTML and turns what a reader could not see, or what would act on the text
// around it, into visible marks: control characters (NUL included) as their
// Control Pictures symbol or U+ code, bidirectional-text controls and
// invisible format characters as [U+XXXX], and bytes that are not UTF-8 as
// \xNN. Tab and newline stay (values are shown with white-space: pre-wrap);
// a carriage return stays before a newline.
func markText(b *strings.Builder, s string) {
	walkMarks(s, func(text string) {
		b.WriteString(template.HTMLEscapeString(text))
	}, func(mark, title string) {
		b.WriteString(`<span class="ctl" title="`)
		b.WriteString(title)
		b.WriteString(`">`)
		b.WriteString(template.HTMLEscapeString(mark))
		b.WriteString(`</span>`)
	})
}

// plainText is s with markText's marks as plain text, on one line, cut to
// shortRunes characters: for a page's <title>, which holds text only.
func plainText(s string) string {
	var b strings.Builder
	walkMarks(s, func(text string) { b.WriteString(text) }, func(mark, _ string) { b.WriteString(mark) })
	out := strings.Join(strings.Fields(b.String()), " ")
	if head, cut := cutRunes(out, shortRunes); cut {
		return head + "…"
	}
	return out
}

// walkMarks splits s into runs of text to show as they are and the marks
// that stand for the characters in between (markText).
func walkMarks(s string, text func(string), mark func(mark, title string)) {
	start := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var m, title string
		switch {
		case r == utf8.RuneError && size == 1:
			m, title = fmt.Sprintf(`\x%02X`, s[i]), "a byte that is not UTF-8"
		case r == '\t' || r == '\n':
		case r == '\r' && i+1 < len(s) && s[i+1] == '\n':
		case r < 0x20:
			m, title = string(rune(0x2400+r)), fmt.Sprintf("control character U+%04X", r)
		case r == 0x7f:
			m, title = "␡", "control character U+007F"
		case r >= 0x80 && r < 0xa0:
			m, title = fmt.Sprintf("[U+%04X]", r), "control character"
		case isBidiOrInvisible(r):
			m, title = fmt.Sprintf("[U+%04X]", r), "invisible or bidirectional-text control character"
		}
		if m != "" {
			if start < i {
				text(s[start:i])
			}
			mark(m, title)
			start = i + size
		}
		i += size
	}
	if start < len(s) {
		text(s[start:])
	}
}

func isBidiOrInvisible(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200b, r == 0x200e, r == 0x200f, r == 0x2060, r == 0xfeff:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// shortRunes is how much of a value a table cell or a folded summary shows.
const shortRunes = 120

// inlineText is a value in a table cell or a heading: one line, at most
// shortRunes characters, the size of the rest said.
func inlineText(s string) template.HTML {
	var b strings.Builder
	b.WriteString(`<span class="v">`)
	head, cut := cutRunes(s, shortRunes)
	markText(&b, head)
	b.WriteString(`</span>`)
	if cut {
		b.WriteString(`<span class="more">… (`)
		b.WriteString(formatBytes(len(s)))
		b.WriteString(`)</span>`)
	}
	return template.HTML(b.String())
}

func inlineTextPtr(s *string) template.HTML {
	if s == nil {
		return `<span class="none">—</span>`
	}
	return inlineText(*s)
}

// foldRunes and foldLines decide when a value is long: longer values fold
// into a <details> on the run page.
const (
	foldRunes = 240
	foldLines = 4
)

// blockText is a whole value: in full, wrapped, and, when collapse is set
// and the value is long, folded into a <details> whose summary shows its
// start and size.
func blockText(s string, collapse bool) template.HTML {
	var b strings.Builder
	if s == "" {
		return `<span class="none">(empty)</span>`
	}
	long := utf8.RuneCountInString(s) > foldRunes || strings.Count(s, "\n") >= foldLines
	if !long {
		b.WriteString(`<span class="v">`)
		markText(&b, s)
		b.WriteString(`</span>`)
		return template.HTML(b.String())
	}
	if collapse {
		b.WriteString(`<details class="long"><summary><span class="v">`)
		first, _, _ := strings.Cut(s, "\n")
		head, _ := cutRunes(first, shortRunes)
		markText(&b, head)
		b.WriteString(`</span><span class="more">… (`)
		b.WriteString(formatBytes(len(s)))
		if n := strings.Count(s, "\n"); n > 0 {
			b.WriteString(", ")
			b.WriteString(plural(n+1, "line", "lines"))
		}
		b.WriteString(`)</span></summary>`)
	}
	b.WriteString(`<div class="v full">`)
	markText(&b, s)
	b.WriteString(`</div>`)
	if collapse {
		b.WriteString(`</details>`)
	}
	return template.HTML(b.String())
}

func blockTextPtr(s *string, collapse bool) template.HTML {
	if s == nil {
		return `<span class="none">—</span>`
	}
	return blockText(*s, collapse)
}

// cutRunes returns s's first n runes and whether anything was cut.
func cutRunes(s string, n int) (string, bool) {
	i := 0
	for k := 0; k < n; k++ {
		if i >= len(s) {
			return s, false
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i], i < len(s)
}

// problem is one element of an entry's validation column (docs/FORMAT.md,
// "Problem kinds").
type problem struct {
	Field         string `json:"field"`
	Problem       string `json:"problem"`
	Detail        string `json:"detail"`
	OriginalBytes *int64 `json:"original_bytes"`
	SHA256        string `json:"sha256"`
}

// problems is a validation column: parsed, or raw when it does not parse.
type problems struct {
	List []problem
	Raw  string
}

func parseProblems(v *string) *problems {
	if v == nil || *v == "" {
		return nil
	}
	var list []problem
	if err := json.Unmarshal([]byte(*v), &list); err != nil || list == nil {
		return &problems{Raw: *v}
	}
	if len(list) == 0 {
		return nil
	}
	return &problems{List: list}
}

// maxIndent is the deepest nesting shown by indentation; deeper steps are
// indented as much and say their depth.
const maxIndent = 12

// stepView is a step as the timeline partial reads it.
type stepView struct {
	review.Step
	N        int // 1-based position in the timeline
	Indent   int
	Collapse bool
	// Problems is the step's validation column, parsed; nil when empty.
	Problems *problems
	// OtherAgent: the step's agent or principal is not the run's, so the
	// step names them.
	OtherAgent bool
	// ShowSender: the step says who sent it (every step of a run with a
	// sender; in a run without one the summary says so once).
	ShowSender bool
	// SenderMismatch: the collector's senders policy flagged the step
	// (docs/FORMAT.md, sender_mismatch).
	SenderMismatch bool
	// NoSender says why a step without a sender has none: senderMissing
	// is flagged, the others are expected.
	NoSender noSender
}

// noSender is why a step has no sender.
type noSender string

const (
	// senderMissing: not authenticated, while other steps of the run were.
	senderMissing noSender = "missing"
	// senderV1: an entry of format version 1, which has no sender column.
	senderV1 noSender = "v1"
	// senderOwn: an entry the collector wrote itself (agentaudit.loss).
	senderOwn noSender = "own"
	// senderNone: not authenticated, like every step of the run.
	senderNone noSender = "none"
)

// Flagged: the missing sender needs the reviewer's attention.
func (n noSender) Flagged() bool { return n == senderMissing }

// Note says why the step has no sender.
func (n noSender) Note() string {
	switch n {
	case senderMissing:
		return "not authenticated, while other steps of this run were"
	case senderV1:
		return "none: an entry of format version 1, which has no sender column"
	case senderOwn:
		return "none: the collector's own entry"
	}
	return "not authenticated"
}

// Flagged: the step's sender needs the reviewer's attention.
func (v stepView) Flagged() bool { return v.SenderMismatch || v.NoSender.Flagged() }

func newStepView(s review.Step, i int, r review.Run, senders senderSummary, collapse bool) stepView {
	agent := s.AgentName
	if agent == nil {
		agent = s.AgentID
	}
	if agent == nil {
		agent = s.ServiceName
	}
	v := stepView{
		Step: s, N: i + 1, Indent: min(max(s.Depth, 0), maxIndent), Collapse: collapse,
		Problems:   parseProblems(s.Validation),
		OtherAgent: deref(agent) != deref(r.Agent) || deref(s.Principal) != deref(r.Principal),
	}
	if v.Problems != nil {
		for _, p := range v.Problems.List {
			v.SenderMismatch = v.SenderMismatch || p.Problem == entry.ProblemSenderMismatch
		}
	}
	if s.Sender == nil {
		switch {
		case entry.IsReservedActionType(s.ActionType):
			v.NoSender = senderOwn
		case s.EndTimeUnixNano == nil: // a row of version 1 (docs/FORMAT.md)
			v.NoSender = senderV1
		case len(senders.List) > 0:
			v.NoSender = senderMissing
		default:
			v.NoSender = senderNone
		}
	}
	v.ShowSender = len(senders.List) > 0 || v.SenderMismatch
	return v
}

// senderSummary is who sent a run's steps, for its summary.
type senderSummary struct {
	// List holds the distinct senders, in the order of their first step.
	List []senderCount
	// Missing counts the steps flagged for having no sender (senderMissing);
	// Mismatches the steps flagged sender_mismatch.
	Missing, Mismatches int
	// AllV1: every step is of format version 1, which has no sender.
	AllV1 bool
}

type senderCount struct {
	Name  string
	Steps int
}

func newSenderSummary(steps []review.Step) senderSummary {
	var sum senderSummary
	at := map[string]int{}
	v1 := 0
	for _, s := range steps {
		if s.EndTimeUnixNano == nil {
			v1++
		}
		if s.Sender == nil {
			continue
		}
		i, ok := at[*s.Sender]
		if !ok {
			i = len(sum.List)
			at[*s.Sender] = i
			sum.List = append(sum.List, senderCount{Name: *s.Sender})
		}
		sum.List[i].Steps++
	}
	sum.AllV1 = len(steps) > 0 && v1 == len(steps)
	return sum
}

// section is one run as the shared partials show it, on the run page or in
// the report.
type section struct {
	TL       *review.Timeline
	Steps    []stepView
	Senders  senderSummary
	Collapse bool // fold long values (the run page); the report shows all
	Report   bool
	Target   string
	// Ago is how long before now (or the report) the last activity of a
	// run without an end was; "" for an ended run.
	Ago string
}

func newSection(tl *review.Timeline, now time.Time, report bool, target string) section {
	s := section{TL: tl, Collapse: !report, Report: report, Target: target, Senders: newSenderSummary(tl.Steps)}
	if tl.Run.End == nil && !now.IsZero() && !tl.Run.LastActivity.IsZero() {
		s.Ago = humanDuration(float64(now.Sub(tl.Run.LastActivity)) / float64(time.Millisecond))
	}
	s.Steps = make([]stepView, len(tl.Steps))
	for i, st := range tl.Steps {
		v := newStepView(st, i, tl.Run, s.Senders, s.Collapse)
		if v.NoSender.Flagged() {
			s.Senders.Missing++
		}
		if v.SenderMismatch {
			s.Senders.Mismatches++
		}
		s.Steps[i] = v
	}
	return s
}

// statusView is a status as the label partial reads it.
type statusView struct {
	Label, Class string
}

func newStatusView(s review.Status) statusView {
	return statusView{Label: statusLabel(s), Class: statusClass(s)}
}
