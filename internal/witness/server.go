package witness

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/agentaudit/agentaudit/internal/atomicfile"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Log is a log the witness cosigns for: its origin (a checkpoint's first
// line) and the keys its checkpoints are signed with. Checkpoint
// signatures of other keys are ignored.
type Log struct {
	Origin    string
	Verifiers []note.Verifier
}

// Config configures a Server.
type Config struct {
	// StateDir holds the last cosigned checkpoint of each log, one file
	// per origin (see stateFile). It is created if missing. One process
	// at a time: the caller locks it.
	StateDir string
	// Signers make the witness's cosignatures: tlog-cosignature v1
	// signers (github.com/transparency-dev/formats/note
	// NewSignerForCosignatureV1). Each answer carries one line per signer.
	Signers []note.Signer
	// Logs are the logs it witnesses.
	Logs []Log
}

// EvidenceDir is the folder of the state directory where the witness
// keeps the add-checkpoint requests it refused as inconsistent although
// the log had signed their checkpoint (the spec allows logging them):
// <hex SHA-256 of origin>.<size>.<hex of the first 8 bytes of the
// request's SHA-256>.request, each the request body as received.
const EvidenceDir = "inconsistent"

// Server is a C2SP tlog-witness: an http.Handler for
// POST /add-checkpoint and, for monitors, GET /<origin hash>/checkpoint
// (the last checkpoint it cosigned, with the log's signatures and its
// own). It is safe for concurrent use; requests for one log are handled
// one at a time, those for different logs in parallel.
type Server struct {
	signers []note.Signer
	dir     string
	logs    map[string]*logState // by origin; fixed after NewServer
	byHash  map[string]*logState // by hex SHA-256 of the origin
}

// logState is what the witness remembers of one log. mu is held from
// the check of the old size until the new state is durable, so that two
// requests cannot both extend the same size (the spec's rollback race).
type logState struct {
	origin    string
	verifiers note.Verifiers
	file      string

	mu   sync.Mutex
	size uint64
	root []byte // nil: never cosigned
	note []byte // the cosigned checkpoint as stored, for monitors
}

// NewServer loads the state of every configured log from cfg.StateDir.
func NewServer(cfg Config) (*Server, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("witness: no state directory")
	}
	if len(cfg.Signers) == 0 {
		return nil, errors.New("witness: no signer key")
	}
	if len(cfg.Logs) == 0 {
		return nil, errors.New("witness: no log to witness")
	}
	if err := ensureDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("witness: state directory: %w", err)
	}
	s := &Server{
		signers: cfg.Signers,
		dir:     cfg.StateDir,
		logs:    make(map[string]*logState, len(cfg.Logs)),
		byHash:  make(map[string]*logState, len(cfg.Logs)),
	}
	for _, l := range cfg.Logs {
		if l.Origin == "" || strings.ContainsAny(l.Origin, "\n") {
			return nil, fmt.Errorf("witness: log origin %q is not one non-empty line", l.Origin)
		}
		if _, dup := s.logs[l.Origin]; dup {
			return nil, fmt.Errorf("witness: log %q configured twice", l.Origin)
		}
		if len(l.Verifiers) == 0 {
			return nil, fmt.Errorf("witness: log %q has no verifier key", l.Origin)
		}
		st := &logState{origin: l.Origin, verifiers: note.VerifierList(l.Verifiers...), file: stateFile(cfg.StateDir, l.Origin)}
		if err := st.load(); err != nil {
			return nil, fmt.Errorf("witness: log %q: %w", l.Origin, err)
		}
		s.logs[l.Origin] = st
		s.byHash[originHash(l.Origin)] = st
	}
	return s, nil
}

// Size returns the size of the last checkpoint the witness cosigned for
// origin (0 if none) and whether it knows the log.
func (s *Server) Size(origin string) (uint64, bool) {
	st, ok := s.logs[origin]
	if !ok {
		return 0, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.size, true
}

// AddCheckpoint is the add-checkpoint call without HTTP: it cosigns
// checkpoint (a signed note) if it is a consistent extension, by proof,
// of the last checkpoint cosigned for its log, whose size must be
// oldSize, and returns the cosignature lines once the new state is
// durable. Errors: ErrMalformed, ErrUnknownLog, ErrBadSignature,
// *ConflictError, ErrBadProof, or another error (storage, signing) that
// is the witness's own failure.
func (s *Server) AddCheckpoint(oldSize uint64, proofHashes [][]byte, checkpoint []byte) ([]byte, error) {
	text, _, err := splitNote(checkpoint)
	if err != nil {
		return nil, err
	}
	origin, _, _ := bytes.Cut(text, []byte("\n"))
	st, ok := s.logs[string(origin)]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownLog, clip(origin))
	}
	n, err := note.Open(checkpoint, st.verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: checkpoint of %q has no signature of its keys", ErrBadSignature, st.origin)
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return nil, fmt.Errorf("%w: checkpoint note: %v", ErrMalformed, err)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	if oldSize > c.size {
		return nil, fmt.Errorf("%w: old size %d is larger than the checkpoint's size %d", ErrMalformed, oldSize, c.size)
	}
	if c.size == 0 && !bytes.Equal(c.root, emptyRoot) {
		return nil, fmt.Errorf("%w: a checkpoint of size 0 must have the empty tree's root", ErrBadProof)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	if oldSize != st.size {
		return nil, &ConflictError{Size: st.size}
	}
	if oldSize == 0 {
		if len(proofHashes) != 0 {
			return nil, fmt.Errorf("%w: a proof from size 0 must be empty, got %d hashes", ErrBadProof, len(proofHashes))
		}
	} else if err := proof.VerifyConsistency(rfc6962.DefaultHasher, st.size, c.size, proofHashes, st.root, c.root); err != nil {
		err = fmt.Errorf("%w: from size %d to %d: %v", ErrBadProof, st.size, c.size, err)
		s.keepEvidence(st, c.size, EncodeRequest(oldSize, proofHashes, checkpoint))
		return nil, err
	}

	cosigs, err := s.cosign(n.Text)
	if err != nil {
		return nil, err
	}
	// Stored: the text, the log's signatures that verified, and ours;
	// not whatever unknown signatures the request carried.
	var stored bytes.Buffer
	stored.WriteString(n.Text)
	stored.WriteByte('\n')
	for _, sig := range n.Sigs {
		fmt.Fprintf(&stored, "— %s %s\n", sig.Name, sig.Base64)
	}
	stored.Write(cosigs)
	if err := atomicfile.WriteFile(st.file, stored.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("witness: storing the cosigned checkpoint of %q: %w", st.origin, err)
	}
	st.size, st.root, st.note = c.size, c.root, stored.Bytes()
	return cosigs, nil
}

// keepEvidence stores a refused request whose checkpoint the log signed:
// a checkpoint inconsistent with one the log signed before is the log's
// own signed proof of a fork or a rewrite, worth more than a status code.
// Best effort: the refusal stands whether or not it is stored.
func (s *Server) keepEvidence(st *logState, size uint64, request []byte) {
	dir := filepath.Join(s.dir, EvidenceDir)
	if os.MkdirAll(dir, 0o750) != nil {
		return
	}
	// Named by content: a client resending the same refused request
	// (retrying) leaves one file.
	sum := sha256.Sum256(request)
	name := fmt.Sprintf("%s.%d.%s.request", originHash(st.origin), size, hex.EncodeToString(sum[:8]))
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return
	}
	_ = atomicfile.WriteFile(path, request, 0o600)
}

// cosign returns one signature line per signer over text.
func (s *Server) cosign(text string) ([]byte, error) {
	var b bytes.Buffer
	for _, sg := range s.signers {
		sig, err := sg.Sign([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("witness: cosigning with %s: %w", sg.Name(), err)
		}
		var kh [4]byte
		binary.BigEndian.PutUint32(kh[:], sg.KeyHash())
		fmt.Fprintf(&b, "— %s %s\n", sg.Name(), base64.StdEncoding.EncodeToString(append(kh[:], sig...)))
	}
	return b.Bytes(), nil
}

// ServeHTTP answers POST /add-checkpoint and GET /<origin hash>/checkpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == AddCheckpointPath {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "add-checkpoint takes POST", http.StatusMethodNotAllowed)
			return
		}
		s.serveAdd(w, r)
		return
	}
	if hash, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/checkpoint"); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.serveCheckpoint(w, hash)
		return
	}
	http.NotFound(w, r)
}

func (s *Server) serveAdd(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("request larger than %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	oldSize, proofHashes, checkpoint, err := ParseRequest(body)
	var cosigs []byte
	if err == nil {
		cosigs, err = s.AddCheckpoint(oldSize, proofHashes, checkpoint)
	}
	var conflict *ConflictError
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(cosigs)
	case errors.As(err, &conflict):
		w.Header().Set("Content-Type", SizeContentType)
		w.WriteHeader(http.StatusConflict)
		_, _ = fmt.Fprintf(w, "%d\n", conflict.Size)
	default:
		http.Error(w, err.Error(), statusOf(err))
	}
}

// statusOf is the HTTP status of an AddCheckpoint error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownLog):
		return http.StatusNotFound
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrBadProof):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

func (s *Server) serveCheckpoint(w http.ResponseWriter, hash string) {
	st, ok := s.byHash[hash]
	if !ok {
		http.Error(w, "unknown log", http.StatusNotFound)
		return
	}
	st.mu.Lock()
	cp := st.note
	st.mu.Unlock()
	if cp == nil {
		http.Error(w, "no checkpoint of this log cosigned yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(cp)
}

// originHash names a log in URLs and state files: the hex SHA-256 of its
// origin, as the spec's monitoring path does.
func originHash(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(sum[:])
}
