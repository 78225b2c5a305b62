package web

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/review"
)

// pageSize is how many runs the list shows at once.
const pageSize = 500

// listPage is what runs.html reads.
type listPage struct {
	page
	Form         filterForm
	Counts       []statusCount
	Total        int // runs matching every filter but the status
	AllHref      string
	Selected     bool // a status is selected
	Filtered     bool // any filter is set
	Runs         []review.Run
	Matching     int // runs matching every filter
	First, Last  int // 1-based positions of the runs shown
	Prev, Next   string
	Integrity    review.Integrity
	Error        string
	AbandonAfter string
}

// filterForm is the form's fields as sent, to show them again.
type filterForm struct {
	Q, Agent, Approver, TargetSystem, Since, Until string
}

type statusCount struct {
	Status   review.Status
	View     statusView
	N        int
	Href     string
	Selected bool
}

// runs is the run list (GET /).
//
// The Reviewer is asked once, without the status filter: the counts per
// status need every status, and a run's status is a field of the answer, so
// the selected statuses are picked from it here.
func (h *handler) runs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := listPage{
		page:         h.page("Runs"),
		AbandonAfter: spanText(h.opts.AbandonAfter),
		Form: filterForm{
			Q: q.Get("q"), Agent: q.Get("agent"), Approver: q.Get("approver"),
			TargetSystem: q.Get("target_system"), Since: q.Get("since"), Until: q.Get("until"),
		},
	}
	f, selected, offset, err := parseFilter(q)
	data.Selected = len(selected) > 0
	data.Filtered = data.Selected || f.Text != "" || f.Agent != "" || f.Approver != "" || f.TargetSystem != "" || f.Since != nil || f.Until != nil
	data.AllHref = listHref(q, "")
	for _, s := range review.Statuses {
		data.Counts = append(data.Counts, statusCount{Status: s, View: newStatusView(s), Href: listHref(q, s), Selected: selected[s]})
	}
	if err != nil {
		data.Error = err.Error()
		h.render(w, r, http.StatusBadRequest, runsTmpl, data)
		return
	}
	runs, integrity, err := h.r.Runs(r.Context(), f)
	if err != nil {
		h.plainError(w, r, http.StatusInternalServerError, "The trail could not be read", "The runs could not be listed: "+oneLine(err))
		return
	}
	data.Integrity = integrity
	data.Total = len(runs)
	var match []review.Run
	for _, run := range runs {
		for i := range data.Counts {
			if data.Counts[i].Status == run.Status {
				data.Counts[i].N++
			}
		}
		if len(selected) == 0 || selected[run.Status] {
			match = append(match, run)
		}
	}
	data.Matching = len(match)
	if offset > len(match) {
		offset = len(match)
	}
	end := min(offset+pageSize, len(match))
	data.Runs = match[offset:end]
	data.First, data.Last = offset+1, end
	if offset > 0 {
		data.Prev = pageHref(q, max(offset-pageSize, 0))
	}
	if end < len(match) {
		data.Next = pageHref(q, end)
	}
	h.render(w, r, http.StatusOK, runsTmpl, data)
}

// parseFilter reads the list's query parameters: status (repeated), q,
// agent, approver, target_system, since, until, offset.
func parseFilter(q url.Values) (review.Filter, map[review.Status]bool, int, error) {
	f := review.Filter{
		Text:         strings.TrimSpace(q.Get("q")),
		Agent:        strings.TrimSpace(q.Get("agent")),
		Approver:     strings.TrimSpace(q.Get("approver")),
		TargetSystem: strings.TrimSpace(q.Get("target_system")),
	}
	var errs []error
	selected := map[review.Status]bool{}
	for _, v := range q["status"] {
		s := review.Status(v)
		if statusClass(s) == "st-other" {
			errs = append(errs, fmt.Errorf("status %q is not one of in_progress, awaiting_approval, completed, failed, abandoned", v))
			continue
		}
		selected[s] = true
	}
	var err error
	if f.Since, err = parseTime("since", q.Get("since"), false); err != nil {
		errs = append(errs, err)
	}
	if f.Until, err = parseTime("until", q.Get("until"), true); err != nil {
		errs = append(errs, err)
	}
	if f.Since != nil && f.Until != nil && !f.Since.Before(*f.Until) {
		errs = append(errs, errors.New("since must be before until"))
	}
	offset := 0
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			errs = append(errs, fmt.Errorf("offset %q is not a number of runs", v))
			offset = 0
		}
	}
	return f, selected, offset, errors.Join(errs...)
}

// parseTime reads an RFC 3339 time, or a date (YYYY-MM-DD, UTC): since
// from the start of that day, until through its end.
func parseTime(name, v string, until bool) (*time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		t = t.UTC()
		return &t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		if until {
			t = t.AddDate(0, 0, 1)
		}
		return &t, nil
	}
	return nil, fmt.Errorf("%s %q is neither an RFC 3339 time (2026-03-09T14:23:07Z) nor a date (2026-03-09)", name, v)
}

// listHref is the list with q's filters and only status s ("" for all).
func listHref(q url.Values, s review.Status) string {
	v := cloneValues(q)
	v.Del("status")
	v.Del("offset")
	if s != "" {
		v.Set("status", string(s))
	}
	return withQuery("/", v)
}

func pageHref(q url.Values, offset int) string {
	v := cloneValues(q)
	v.Del("offset")
	if offset > 0 {
		v.Set("offset", strconv.Itoa(offset))
	}
	return withQuery("/", v)
}

func cloneValues(q url.Values) url.Values {
	v := url.Values{}
	for k, vs := range q {
		if k != "token" {
			v[k] = append([]string(nil), vs...)
		}
	}
	return v
}

func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// runPage is what run.html reads.
type runPage struct {
	page
	Sec section
}

// timeline asks the Reviewer for one run and answers 404 or 500 itself
// when it cannot.
func (h *handler) timeline(w http.ResponseWriter, r *http.Request, id string) (*review.Timeline, bool) {
	tl, err := h.r.Timeline(r.Context(), id)
	switch {
	case errors.Is(err, review.ErrNoRun):
		head, cut := cutRunes(id, shortRunes)
		if cut {
			head += "…"
		}
		h.notFound(w, r, fmt.Sprintf("The trail holds no entry of execution id %q.", head))
		return nil, false
	case err != nil:
		h.plainError(w, r, http.StatusInternalServerError, "The trail could not be read", "This run could not be shown: "+oneLine(err))
		return nil, false
	case tl == nil:
		h.plainError(w, r, http.StatusInternalServerError, "Internal error", "This run could not be shown: the reviewer answered nothing.")
		return nil, false
	}
	return tl, true
}

// run is one run's page (GET /runs/{id}).
func (h *handler) run(w http.ResponseWriter, r *http.Request, id string) {
	tl, ok := h.timeline(w, r, id)
	if !ok {
		return
	}
	p := h.page("Run " + id)
	h.render(w, r, http.StatusOK, runTmpl, runPage{page: p, Sec: newSection(tl, p.Now, false, p.Target)})
}

// export downloads one run (GET /runs/{id}/export.{html,jsonl,csv}).
func (h *handler) export(w http.ResponseWriter, r *http.Request, id, ext string) {
	var contentType string
	switch ext {
	case "html":
		contentType = "text/html; charset=utf-8"
	case "jsonl":
		contentType = "application/jsonl; charset=utf-8"
	case "csv":
		contentType = "text/csv; charset=utf-8"
	default:
		h.notFound(w, r, "Exports are export.html, export.jsonl and export.csv.")
		return
	}
	tl, ok := h.timeline(w, r, id)
	if !ok {
		return
	}
	var buf bytes.Buffer
	var err error
	switch ext {
	case "html":
		err = Report(&buf, []*review.Timeline{tl}, ReportMeta{
			Target:    h.r.Target(),
			Generated: h.opts.Now(),
			Command:   "auditctl serve, GET " + exportHref(id, "html"),
			Title:     "Audit report: run " + id,
		})
	case "jsonl":
		err = review.WriteJSONL(&buf, tl.Steps)
	case "csv":
		err = review.WriteCSV(&buf, tl.Steps)
	}
	if err != nil {
		h.plainError(w, r, http.StatusInternalServerError, "Internal error", "The export could not be written.")
		return
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": exportName(id, ext)}))
	h.send(w, r, http.StatusOK, contentType, buf.Bytes())
}

// exportName is a file name for a run's export: the id's letters, digits,
// dots, dashes and underscores, the rest as "_", at most 64 of them.
func exportName(id, ext string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 64 {
			break
		}
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), ".")
	if name == "" {
		name = "run"
	}
	return "run-" + name + "." + ext
}

// oneLine is an error's message on one line and at most 500 characters:
// what went wrong, never a trace.
func oneLine(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if head, cut := cutRunes(msg, 500); cut {
		return head + "…"
	}
	return msg
}
