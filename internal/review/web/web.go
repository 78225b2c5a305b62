package web

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/review"
)

// Options configure Handler.
type Options struct {
	// Token, when not empty, is required of every request (package doc).
	Token string
	// Now is the clock ("as of" times, time since last activity);
	// time.Now when nil.
	Now func() time.Time
	// AbandonAfter is the Reviewer's abandon threshold, shown in the status
	// legend; review.DefaultAbandonAfter when zero.
	AbandonAfter time.Duration
	// Version is shown in the pages' footer.
	Version string
}

// cookieName is the cookie that carries the token after ?token=.
const cookieName = "agentaudit_token"

// Handler serves the read-only web view of r's trail (package doc).
func Handler(r review.Reviewer, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AbandonAfter <= 0 {
		opts.AbandonAfter = review.DefaultAbandonAfter
	}
	h := &handler{r: r, opts: opts}
	if opts.Token != "" {
		h.tokenSum = sha256.Sum256([]byte(opts.Token))
		h.cookieSum = sha256.Sum256([]byte(cookieValue(opts.Token)))
	}
	return h
}

type handler struct {
	r         review.Reviewer
	opts      Options
	tokenSum  [32]byte // SHA-256 of the token
	cookieSum [32]byte // SHA-256 of the cookie's value
}

// cookieValue is what the cookie holds: a digest of the token, so that the
// token itself is not stored, in a form any cookie can carry.
func cookieValue(token string) string {
	sum := sha256.Sum256([]byte("agentaudit web cookie\x00" + token))
	return hex.EncodeToString(sum[:])
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	hdr.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.plainError(w, r, http.StatusInternalServerError, "Internal error", "The page could not be shown.")
		}
	}()

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		h.plainError(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This view is read-only: it answers GET and HEAD only.")
		return
	}
	if h.opts.Token == "" && !localHost(r.Host) {
		h.plainError(w, r, http.StatusForbidden, "Forbidden", "Without a token this view answers only requests addressed to localhost or an IP address.")
		return
	}
	if h.opts.Token != "" && !h.authorized(w, r) {
		return
	}
	h.route(w, r)
}

// localHost: host (of a Host header) is localhost, a name below it, or an
// IP address.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return net.ParseIP(strings.Trim(host, "[]")) != nil
}

// authorized checks the token (package doc). It answers the request itself
// (401, or the redirect that drops ?token=) when it returns false.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if q.Has("token") {
		if !h.matches(&h.tokenSum, q.Get("token")) {
			h.unauthorized(w, r)
			return false
		}
		http.SetCookie(w, &http.Cookie{
			Name: cookieName, Value: cookieValue(h.opts.Token), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		q.Del("token")
		loc := r.URL.EscapedPath()
		// Never "//host": a browser would leave the server.
		if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`) {
			loc = "/"
		}
		if len(q) > 0 {
			loc += "?" + q.Encode()
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusSeeOther)
		return false
	}
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if h.matches(&h.tokenSum, strings.TrimSpace(tok)) {
			return true
		}
	}
	for _, c := range r.CookiesNamed(cookieName) {
		if h.matches(&h.cookieSum, c.Value) {
			return true
		}
	}
	h.unauthorized(w, r)
	return false
}

// matches compares v with the secret whose SHA-256 is want in constant
// time; comparing digests hides the secret's length too.
func (h *handler) matches(want *[32]byte, v string) bool {
	got := sha256.Sum256([]byte(v))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (h *handler) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="auditctl serve"`)
	h.plainError(w, r, http.StatusUnauthorized, "Token required",
		"This view needs the token that auditctl serve printed: open the URL it printed (with ?token=…) from the terminal or the address bar, or send the header Authorization: Bearer <token>.")
}

// route dispatches on the path as sent (percent-encoded), so that an
// execution id may hold "/" and any other character.
func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	switch {
	case p == "/":
		h.runs(w, r)
		return
	case p == "/run" || strings.HasPrefix(p, "/run/export."):
		if !r.URL.Query().Has("id") {
			break
		}
		id := r.URL.Query().Get("id")
		if p == "/run" {
			h.run(w, r, id)
		} else {
			h.export(w, r, id, strings.TrimPrefix(p, "/run/export."))
		}
		return
	case strings.HasPrefix(p, "/runs/"):
		seg, rest, _ := strings.Cut(strings.TrimPrefix(p, "/runs/"), "/")
		id, err := url.PathUnescape(seg)
		if err != nil || seg == "" {
			break
		}
		switch {
		case rest == "" && !strings.HasSuffix(p, "/"):
			h.run(w, r, id)
			return
		case strings.HasPrefix(rest, "export.") && !strings.Contains(rest, "/"):
			h.export(w, r, id, strings.TrimPrefix(rest, "export."))
			return
		}
	}
	h.notFound(w, r, "No such page.")
}

// page is what every page template reads.
type page struct {
	Title   string
	Target  string
	Version string
	Now     time.Time
}

func (h *handler) page(title string) page {
	return page{Title: title, Target: h.r.Target(), Version: h.opts.Version, Now: h.opts.Now()}
}

// render executes t into a buffer first, so that a failure is a clean 500
// rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		h.plainError(w, r, http.StatusInternalServerError, "Internal error", "The page could not be shown.")
		return
	}
	h.send(w, r, status, "text/html; charset=utf-8", buf.Bytes())
}

// send answers with body, or only its headers to a HEAD request.
func (h *handler) send(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // an error: the client went away, nothing to do
	}
}

type errorPage struct {
	page
	Status  int
	Message string
}

// plainError is an error page: a heading and one sentence, no detail of
// the server's inside.
func (h *handler) plainError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	data := errorPage{page: page{Title: title, Version: h.opts.Version, Now: h.opts.Now()}, Status: status, Message: msg}
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		data.Target = h.r.Target()
	}
	var buf bytes.Buffer
	if err := errorTmpl.Execute(&buf, data); err != nil {
		h.send(w, r, status, "text/plain; charset=utf-8", []byte(title+": "+msg+"\n"))
		return
	}
	h.send(w, r, status, "text/html; charset=utf-8", buf.Bytes())
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	h.plainError(w, r, http.StatusNotFound, "Not found", msg)
}
