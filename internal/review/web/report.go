package web

import (
	"fmt"
	"io"
	"time"

	"github.com/agentaudit/agentaudit/internal/review"
)

// ReportMeta describes a report.
type ReportMeta struct {
	// Target names the trail, as review.Reviewer.Target does.
	Target string
	// Generated is when the report was made; not shown when zero.
	Generated time.Time
	// Command is how the report was produced, for the record.
	Command string
	// Title heads the report; "Audit report" when empty.
	Title string
}

// reportPage is what report.html reads.
type reportPage struct {
	Meta     ReportMeta
	CSP      string
	Sections []section
}

// Report writes one self-contained HTML file of the runs tl, in the order
// given: for each run its summary, its whole timeline with every value in
// full, and what verification found, with the checkpoints' signed notes
// verbatim and the commands that check the trail again. The file loads
// nothing (no network, no script; its own Content-Security-Policy forbids
// both), and prints with each run from a new page, legibly in black and
// white.
func Report(w io.Writer, tl []*review.Timeline, meta ReportMeta) error {
	if meta.Title == "" {
		meta.Title = "Audit report"
	}
	data := reportPage{Meta: meta, CSP: reportCSP}
	for i, t := range tl {
		if t == nil {
			return fmt.Errorf("web: report: timeline %d is nil", i)
		}
		data.Sections = append(data.Sections, newSection(t, meta.Generated, true, meta.Target))
	}
	if err := reportTmpl.Execute(w, data); err != nil {
		return fmt.Errorf("web: report: %w", err)
	}
	return nil
}
