package approval

// The HTTP API of docs/APPROVALS.md and the reviewers' inbox page.

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

//go:embed inbox.html inbox.js
var inboxFS embed.FS

// Handler serves the API and the inbox. authenticate wraps the API's
// routes (the auth extension: it answers 401 itself); identify names who
// sent a request it let through.
func (s *Service) Handler(authenticate func(http.Handler) http.Handler, identify func(*http.Request) Identity) http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("POST /v1/approvals", func(w http.ResponseWriter, r *http.Request) {
		var in RequestInput
		if err := decode(w, r, &in); err != nil {
			writeError(w, err)
			return
		}
		a, created, err := s.Request(identify(r), in)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Location", "/v1/approvals/"+a.ID)
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeJSON(w, status, a)
	})
	api.HandleFunc("GET /v1/approvals", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		status := Status(q.Get("status"))
		switch status {
		case "":
			status = Pending
		case Pending, Approved, Rejected, Expired:
		default:
			writeError(w, badRequest(`"status" %q is not one of pending, approved, rejected, expired`, status))
			return
		}
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				writeError(w, badRequest(`"limit" %q is not a number from 1 to 1000`, v))
				return
			}
			limit = n
		}
		as, err := s.List(identify(r), status, limit)
		if err != nil {
			writeError(w, err)
			return
		}
		if as == nil {
			as = []Approval{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"approvals": as})
	})
	api.HandleFunc("GET /v1/approvals/{id}", func(w http.ResponseWriter, r *http.Request) {
		var wait time.Duration
		if v := r.URL.Query().Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeError(w, badRequest(`"wait" %q is not a duration such as "30s"`, v))
				return
			}
			wait = d
		}
		a, err := s.Get(identify(r), r.PathValue("id"), wait, r.Context().Done())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	api.HandleFunc("GET /v1/approvals/{id}/context", func(w http.ResponseWriter, r *http.Request) {
		tl, err := s.Context(identify(r), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"timeline": tl})
	})
	api.HandleFunc("POST /v1/approvals/{id}/decision", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Decision string  `json:"decision"`
			Comment  *string `json:"comment"`
		}
		if err := decode(w, r, &in); err != nil {
			writeError(w, err)
			return
		}
		if in.Comment != nil && *in.Comment == "" {
			in.Comment = nil
		}
		a, err := s.Decide(identify(r), r.PathValue("id"), in.Decision, in.Comment)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	api.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/", authenticate(api))
	mux.HandleFunc("GET /{$}", static("inbox.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /inbox.js", static("inbox.js", "text/javascript; charset=utf-8"))
	return mux
}

// static serves a file of the inbox. The page holds no data: it reads the
// API with the reviewer's token, loads nothing from elsewhere and is
// framed by no one.
func static(name, contentType string) http.HandlerFunc {
	b, err := inboxFS.ReadFile(name)
	if err != nil {
		panic(err) // embedded above
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	}
}

// decode reads a JSON body into v: at most maxBody bytes, no unknown
// fields, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return &apiError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("Content-Type %q: send application/json", ct)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the body is over %d bytes", maxBody)}
		}
		return badRequest("the body is not the JSON expected: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body holds more than one JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	ae := (*apiError)(nil)
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, msg: err.Error()}
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.msg})
}
