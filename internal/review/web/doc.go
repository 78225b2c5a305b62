// Package web is the reviewer's read-only view of a trail: the pages of
// `auditctl serve` (Handler) and the self-contained HTML report of
// `auditctl export --format html` (Report). It renders what a
// review.Reviewer answers and never changes anything: it is plain Go, with
// no cgo and no query engine of its own.
//
// # Pages
//
//   - GET / lists the runs: execution id, agent, principal, start, end,
//     duration, status (a coloured label that also says it in words),
//     actions, errors, approvals and pending approvals, and whether the
//     files holding the run verified (✓ intact, or ✗ and the number of
//     violations). Above the table: the number of runs in each status (each
//     a link that selects that status) and a form, an ordinary GET form, to
//     select by status, by any text (execution id, agent, principal, sender,
//     target, approver, any value: parameter q), agent, approver, target_system, and
//     since/until (RFC 3339, or YYYY-MM-DD: since from the start of that day,
//     until through the end of that day, UTC). At most 500 runs show at
//     once; a link leads to the next ones.
//   - GET /runs/{execution_id} shows one run: its summary; its verification
//     ("Intact — signed checkpoint at size N by key K (key id)", or every
//     violation, with a note when the checkpoints were checked with keys
//     published beside the trail, trusted on first use); its timeline,
//     every step in true order and indented by its nesting depth, with
//     time, duration, action, target, previous → proposed value, reasoning,
//     approver, result, status code, validation problems and any violation
//     of the entry (long values fold into a <details> element); and the
//     files, seq ranges, checkpoints and command that re-verify it. The id
//     is one path segment, percent-encoded (url.PathEscape), so an id may
//     hold any character, "/" included; the ids "", "." and "..", which no
//     URL path can carry as a segment, are served at /run?id=….
//   - GET /runs/{execution_id}/export.html, export.jsonl and export.csv
//     download the run: the report (Report), and the steps as
//     review.WriteJSONL and review.WriteCSV write them.
//
// An unknown run is a 404 page; a trail that cannot be read a 500 page that
// says so in one line. Times are UTC, RFC 3339 with milliseconds.
//
// # Who sent it
//
// A run's summary, on its page and in the report, names who sent its steps:
// the sender column, the identity the collector authenticated (README,
// "Who sent it"), each distinct sender with its number of steps, or that
// none was authenticated. When the run has a sender, every step says who
// sent it, and two cases are flagged ⚠ on the step and counted in the
// summary: a step without a sender (not authenticated, while other steps
// were) and a step whose validation holds sender_mismatch (the collector's
// senders policy: this sender may not write for this agent). An entry of
// format version 1, which has no sender column, and the collector's own
// entries (agentaudit.loss) say why they have none, unflagged.
//
// # Read-only, no JavaScript, no outside resources
//
// Only GET and HEAD are served; any other method is 405 with
// "Allow: GET, HEAD". The pages hold no script: reading, filtering and
// following links work with JavaScript disabled. Every response carries a
// Content-Security-Policy that allows nothing but the page's own inline
// stylesheet (by its hash) and data: images ("default-src 'none'"), forms
// that submit to the same origin, and no framing; plus
// "X-Content-Type-Options: nosniff", "Referrer-Policy: no-referrer",
// "X-Frame-Options: DENY" and "Cache-Control: no-store". Every value from
// the trail is escaped by html/template; control characters (NUL
// included), bidirectional-text controls and bytes that are not UTF-8 are
// shown as visible marks rather than acted on.
//
// # Where it listens, and the token
//
// The handler does not choose its address: `auditctl serve` listens on
// loopback unless told otherwise. Without a token the handler answers only
// requests whose Host is an IP address or localhost (403 otherwise), so
// that a web page cannot reach it through a DNS name that it points at
// 127.0.0.1 (DNS rebinding); to serve it under a host name, set a token.
//
// With Options.Token set, every request must carry the token, in one of
// three ways, or it is answered 401:
//
//   - the header "Authorization: Bearer <token>" (for curl and scripts);
//   - the query parameter token=<token>: the handler then sets a cookie and
//     answers 303 See Other to the same URL without the token parameter,
//     so that the token does not stay in the address bar or the history.
//     A wrong token parameter is 401 even when a valid cookie is sent;
//   - that cookie, agentaudit_token: HttpOnly, SameSite=Strict, Path=/,
//     Secure when served over TLS, no expiry (it ends with the browser
//     session). It holds a SHA-256 of the token, not the token itself.
//
// Tokens are compared in constant time (crypto/subtle, over SHA-256
// digests, so that neither the content nor the length leaks). Open the
// URL with the token from the terminal or the address bar: a browser does
// not send a SameSite=Strict cookie after a redirect that a link on
// another site started, so such a link ends at the 401 page.
package web // import "github.com/agentaudit/agentaudit/internal/review/web"
