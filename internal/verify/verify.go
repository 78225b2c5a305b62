// Package verify checks an agentaudit trail without trusting its footers or
// file names: it recomputes every entry hash from the row, follows prev_hash
// links across files in seq order per chain, and checks what the footers and
// file names claim against the rows. It is the library behind
// `auditctl verify`.
//
// The checks that docs/verify.sql makes (hash_mismatch, broken_link, gap,
// duplicate, timestamp_mismatch, and the approval checks of
// docs/APPROVALS.md in approvals.go) are made here with the same meaning, so that
// both report the same (chain_id, seq) pairs; the checks SQL cannot make
// (file names, footers, row order inside a file, files of another trail) have
// kinds of their own. See docs/FORMAT.md, "What verification proves".
//
// Signed checkpoints are checked against the trail (checkpoints.go): a
// checkpoint of format 2 also against the RFC 6962 tree of its chain's
// entries, computed while the files are read (tree.go, roots.go), and
// against the tiles stored beside the trail, from which consistency proofs
// are read (consistency.go). Options.From verifies only what each chain
// added since a checkpoint verified before (incremental.go), as `auditctl
// watch` does.
package verify // import "github.com/agentaudit/agentaudit/internal/verify"

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Kind names what is wrong. The values are part of the --json output: never
// rename them.
type Kind string

// Violation kinds. The first six have exactly the meaning of docs/verify.sql.
const (
	// HashMismatch: entry_hash is not the SHA-256 of the row's canonical
	// encoding.
	HashMismatch Kind = "hash_mismatch"
	// BrokenLink: prev_hash is not the entry_hash of the entry with the next
	// lower seq of the chain (the genesis hash at seq 0).
	BrokenLink Kind = "broken_link"
	// Gap: seq values missing inside one file, or a chain's rows not
	// starting at seq 0.
	Gap Kind = "gap"
	// Duplicate: more than one row with this (chain_id, seq).
	Duplicate Kind = "duplicate"
	// TimestampMismatch: the timestamp column is not time_unix_nano
	// rounded down to milliseconds (floor, also for negative times).
	TimestampMismatch Kind = "timestamp_mismatch"
	// RecordedLoss: an entry the collector wrote to record entries it lost
	// (action type agentaudit.loss, which no span can produce): the
	// operator accepted the loss of a corrupt write-ahead log (README,
	// "Recovery"), and the chain is knowingly incomplete there. The detail
	// is the entry's result (what was lost and renumbered), approver and
	// reasoning.
	RecordedLoss Kind = "recorded_loss"

	// Reordering: rows of a file not in ascending seq.
	Reordering Kind = "reordering"
	// MissingFile: a seq range missing between two files of a chain (or
	// before its first file): a file was removed. Distinct from Gap, which
	// is inside a file. docs/verify.sql reports it as a gap.
	MissingFile Kind = "missing_file"
	// ForeignFile: a file that does not belong where it is: rows of another
	// chain, or internally consistent rows that link to neither neighbour
	// (a file of another trail swapped in).
	ForeignFile Kind = "foreign_file"
	// NotAuditFile: a .parquet file that is not an agentaudit batch at all
	// (unreadable, not Parquet, other columns, no rows).
	NotAuditFile Kind = "not_audit_file"
	// NotRegularFile: a name a reader's glob reads as Parquet
	// (read_parquet('<dir>/**/*.parquet') or 'dt=*/*.parquet') that is not
	// a regular file of the trail: a symbolic link (to a file or a
	// directory), a named pipe, a device, a socket, a directory named
	// *.parquet. A reader may follow it and show rows no check covers;
	// verify neither follows nor opens it. The detail says what it is,
	// e.g. "symlink to /tmp/x.parquet". Local directories only.
	NotRegularFile Kind = "not_regular_file"
	// FooterMissing: a footer metadata key is missing (named in the detail).
	FooterMissing Kind = "footer_missing"
	// FooterMismatch: a footer metadata value disagrees with the rows.
	FooterMismatch Kind = "footer_mismatch"
	// FileNameMismatch: the file name is not a batch name, or its chain id
	// or first seq disagrees with the rows.
	FileNameMismatch Kind = "file_name_mismatch"

	// BadSignature: a checkpoint (stored beside the trail, or kept by the
	// auditor) whose signature does not verify with the verifier keys, or
	// for whose chain there is no key. File is the checkpoint.
	BadSignature Kind = "bad_signature"
	// EndsBeforeCheckpoint: a chain ends before the head a signed checkpoint
	// records (or is absent from the trail): its tail was truncated. Seq is
	// the checkpoint's head seq (size - 1).
	EndsBeforeCheckpoint Kind = "ends_before_checkpoint"
	// CheckpointMismatch: the trail reaches a signed checkpoint but
	// contradicts it: entry size-1 has another entry_hash, or the batch the
	// checkpoint seals has another Merkle root or seq range (or a stored
	// checkpoint's name disagrees with its content). History was rewritten.
	CheckpointMismatch Kind = "checkpoint_mismatch"

	// The approval checks (docs/APPROVALS.md, "The checks"), which
	// docs/verify.sql makes too. The service's entries are those whose
	// agentaudit.approval.id is not flagged reserved_key; approvals are
	// matched by id across every chain of the trail.

	// SelfApproved: a person's approve or reject whose approver (or
	// sender) is the sender of the request it decides. Reported at the
	// decision.
	SelfApproved Kind = "self_approved"
	// ApprovalMismatch: a write whose audit.approval.id names no request
	// of the trail; or whose approval was not approved (rejected, expired,
	// undecided); or whose execution_id, target_system, target_resource
	// or proposed_value differs from the request's (the detail names the
	// fields); or that was recorded before the decision (same chain: lower
	// seq; else an earlier time_unix_nano); or whose decision's
	// request_hash is not the request's entry_hash. The first request and
	// the first decision of an id count (by time_unix_nano, chain, seq).
	ApprovalMismatch Kind = "approval_mismatch"
	// ApprovalReused: a write naming an approval that a write recorded
	// before it (same chain: lower seq; else an earlier time_unix_nano)
	// already used without failing (status_code not Error, result not
	// starting with "error"). A failed attempt may be retried.
	ApprovalReused Kind = "approval_reused"
	// UnapprovedWrite: a write without audit.approval.id that a policy in
	// force in its chain covers: the latest agentaudit.approval_policy
	// entry of the chain with a lower seq has a policy matching its target
	// system, target resource and tool (gen_ai.tool.name, else the target
	// system). The detail names the policy.
	UnapprovedWrite Kind = "unapproved_write"
)

// SQLKinds are the kinds docs/verify.sql reports (MissingFile shows up there
// as Gap).
var SQLKinds = []Kind{HashMismatch, BrokenLink, Gap, Duplicate, TimestampMismatch, RecordedLoss,
	SelfApproved, ApprovalMismatch, ApprovalReused, UnapprovedWrite}

// NoSeq is Violation.Seq for a violation that concerns a whole file.
const NoSeq int64 = -1

// Violation is one thing wrong with the trail.
type Violation struct {
	// File is the file's key below the target (e.g.
	// "dt=2026-03-09/chain-a-00000000000000000000.parquet").
	File    string `json:"file"`
	ChainID string `json:"chain_id"`
	// Seq is the entry concerned, or NoSeq (-1).
	Seq int64 `json:"seq"`
	// Through, when set, is the last seq of a range starting at Seq.
	Through int64  `json:"through,omitempty"`
	Kind    Kind   `json:"kind"`
	Detail  string `json:"detail"`
}

// String is the one-line form: "<file>: seq <n>: <kind>: <detail>".
func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(v.File)
	b.WriteString(": ")
	if v.Seq != NoSeq {
		b.WriteString("seq ")
		b.WriteString(strconv.FormatInt(v.Seq, 10))
		if v.Through > v.Seq {
			b.WriteString(" to ")
			b.WriteString(strconv.FormatInt(v.Through, 10))
		}
		b.WriteString(": ")
	}
	b.WriteString(string(v.Kind))
	b.WriteString(": ")
	b.WriteString(v.Detail)
	return b.String()
}

// Chain summarizes one chain of the trail.
type Chain struct {
	ChainID string `json:"chain_id"`
	Entries int64  `json:"entries"` // rows of this chain
	Files   int    `json:"files"`
	// FirstSeq and LastSeq are the lowest and highest seq present.
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
	// FirstTime and LastTime are the time_unix_nano of FirstSeq and LastSeq.
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// LastHash is the entry_hash of LastSeq: the head to compare with a
	// record kept elsewhere (or, later, a signed checkpoint).
	LastHash string `json:"last_hash"`
	// CheckpointSize is the size of the latest stored checkpoint of the
	// chain whose signature verified, 0 when none.
	CheckpointSize int64 `json:"checkpoint_size"`
	Violations     int   `json:"violations"`
	Intact         bool  `json:"intact"`
}

// Report is the result of a verification.
type Report struct {
	Target     string      `json:"target"`
	Files      int         `json:"files"`
	Entries    int64       `json:"entries"`
	Chains     []Chain     `json:"chains"`
	Violations []Violation `json:"violations"`
	// Intact: no violation. It says nothing about a truncated tail unless a
	// checkpoint was checked (Checkpoint).
	Intact bool `json:"intact"`
	// Checkpoint is whether a checkpoint the auditor kept was checked
	// (Options.Checkpoints); false means a truncated tail can only have been
	// detected by the checkpoints stored beside the trail, which whoever
	// truncated it may have removed too.
	Checkpoint bool `json:"checkpoint"`
	// StoredCheckpoints is how many checkpoints were found beside the trail
	// (each checked when a key was available).
	StoredCheckpoints int `json:"stored_checkpoints"`
	// TrustedOnFirstUse names ("name+hash") the published keys that
	// signatures were checked with because no key was given.
	TrustedOnFirstUse []string `json:"trusted_on_first_use,omitempty"`
	// Notes are caveats for the reader, e.g. that no checkpoint was given.
	Notes []string `json:"notes"`
	// trees, by chain: the tree at the latest stored checkpoint whose
	// root matched (TreeRange).
	trees map[string]treeAt
}

// DefaultFetchers is how many files of a remote source Verify downloads at
// once by default. Memory: up to Fetchers + Workers files are held.
const DefaultFetchers = 8

// NoCheckpointNote is the note of a report made without a checkpoint.
const NoCheckpointNote = "no checkpoint given: a truncated tail cannot be detected"

// Options tune Verify. The zero value is usable.
type Options struct {
	// Workers is how many files are read at once; 0 means GOMAXPROCS.
	Workers int
	// Fetchers is how many files of a remote source (anything but a local
	// store.Dir) are downloaded at once, ahead of the workers; 0 means
	// DefaultFetchers. Downloads, not the CPU, bound a verification over
	// S3: each file waits a round trip or more.
	Fetchers int
	// Progress, when set, is called after each file (from several
	// goroutines, never concurrently) with the files done, the total and the
	// entries read so far.
	Progress func(done, total int, entries int64)
	// Keys are verifier keys (note format, "name+hash+key") that
	// checkpoints must be signed with, for every chain. None: the keys
	// published beside the trail (keys/<chain_id>-<hash>.vkey) are used for
	// their own chain and trusted on first use, as the report notes.
	Keys []string
	// Checkpoints are signed checkpoints the auditor kept, each compared
	// with the trail like the stored ones; the report's Checkpoint is then
	// true. Without a key (given or published), Verify fails with ErrNoKey.
	Checkpoints []KeptCheckpoint
	// TSA are the certificates of the timestamp authority the auditor
	// trusts (its signing certificate, or a root it chains to): every
	// RFC 3161 token stored beside a checkpoint is checked with them
	// (timestamps.go). None: the tokens are not checked, as a note says.
	TSA []*x509.Certificate
	// RequireTimestamps: the latest stored checkpoint of each chain must
	// have a token beside it. Needs TSA, else Verify fails with ErrNoTSA.
	RequireTimestamps bool
	// TimestampMaxDelay is how much later than its batch's last entry a
	// token's time may be; 0 means DefaultTimestampMaxDelay.
	TimestampMaxDelay time.Duration
	// Witnesses are witness verifier keys (note format, as auditctl
	// witness keygen prints them): the latest stored checkpoint of each
	// chain must carry valid cosignatures of Cosignatures of them
	// (witnessed.go). None: cosignatures are not checked.
	Witnesses []string
	// Cosignatures is how many of Witnesses must have cosigned; 0 means 1.
	// More than len(Witnesses) fails with ErrWitnesses.
	Cosignatures int
	// From, by chain id, verifies only what each chain added since a
	// checkpoint verified before (incremental.go, auditctl watch): its
	// files from the checkpoint's size on, linked to its head, and its
	// stored checkpoints after it, their roots extending its tree. The
	// approval checks, which need the whole trail, are not made. Nothing
	// new is no error (ErrNoFiles is not returned).
	From map[string]Start
	// UpTo, by chain id, leaves out the chain's stored checkpoints past
	// the size given, and the cosignatures and timestamps beside them, as
	// if not yet written: a monitor verifies up to the newest checkpoint it
	// listed, whatever the collector writes meanwhile.
	UpTo map[string]int64
}

// ErrNoFiles: the target holds no .parquet file. Nothing was verified, which
// is not a pass (usually a wrong path or prefix).
var ErrNoFiles = errors.New("verify: no .parquet files under the target")

// CheckFile checks one batch file on its own, as Verify checks each file of
// a trail: it reads the rows within the same decompression bounds,
// recomputes every entry_hash and the Merkle root, and checks the rows'
// order and links, the footer and the file name. Links to other files and
// checkpoints are not checked. key is the file's key below the target
// (its name is checked against the rows). CheckFile returns the file's
// violations, none when the file is intact on its own.
func CheckFile(key string, data []byte) []Violation {
	r := getFileReader()
	defer putFileReader(r)
	return r.read(key, data).violations
}

// Verify checks every batch file src lists (src.Batches: every .parquet
// name a reader reads), then every signed checkpoint stored beside the
// trail (checkpoints/<chain_id>/*.checkpoint) and given in opts, and
// returns the report. An error means the trail could not be verified (the
// source could not be listed or a file could not be fetched; ErrNoFiles;
// ErrNoKey; checkpoint.ErrBadKey); problems with the files' contents are
// violations in the report, never errors.
func Verify(ctx context.Context, src store.Reader, opts Options) (*Report, error) {
	// view is the trail as the checks see it: all of it, or (From) what
	// was added since each start. Files are read from src.
	view, starts := src, map[string]*compact.Range(nil)
	if len(opts.From) > 0 {
		var err error
		if starts, err = checkStarts(opts.From); err != nil {
			return nil, err
		}
		view = since{Reader: src, from: opts.From}
	}
	// A trail being written: the checkpoints are listed before the batch
	// files, and the checks see only those, so that each has its files
	// (a batch is written before its checkpoint). A checkpoint written
	// while the files are read is the next run's.
	cps, err := view.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return nil, err
	}
	if len(opts.UpTo) > 0 {
		cps = slices.DeleteFunc(cps, func(n string) bool {
			id, size, ok := besideCheckpoint(n)
			upTo, bounded := opts.UpTo[id]
			return ok && bounded && size > upTo
		})
	}
	view = checkpointsAsListed{Reader: view, names: cps}
	keys, err := view.Batches(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 && starts == nil {
		return nil, fmt.Errorf("%w %s", ErrNoFiles, src.String())
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(keys)))

	results := make([]*fileResult, len(keys))
	var (
		next     atomic.Int64
		entries  atomic.Int64
		mu       sync.Mutex
		done     int
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	record := func(i int, res *fileResult) {
		results[i] = res
		n := entries.Add(int64(res.rows))
		mu.Lock()
		done++
		if opts.Progress != nil {
			opts.Progress(done, len(keys), n)
		}
		mu.Unlock()
	}
	apc := &approvalCollector{}
	check := func(r *fileReader, i int, data []byte) {
		r.apc = apc
		res := r.read(keys[i], data)
		r.apc = nil
		record(i, res)
	}
	// readErr handles an error reading file i: a name that is not a regular
	// file is a violation, anything else makes the verification fail.
	readErr := func(i int, err error) {
		var nr *store.NotRegularError
		if errors.As(err, &nr) {
			record(i, notRegular(keys[i], nr.What))
			return
		}
		fail(err)
	}
	// Each worker has its own file reader and checks the files next gives
	// it until next returns false.
	work := func(next func(r *fileReader) (i int, data []byte, ok bool)) {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := getFileReader()
				defer putFileReader(r)
				for {
					i, data, ok := next(r)
					if !ok {
						return
					}
					check(r, i, data)
				}
			}()
		}
	}
	if d, ok := src.(store.Dir); ok {
		// Local files: each worker reads the next file itself, into the
		// buffer of the one before (the bytes are not kept past read).
		work(func(r *fileReader) (int, []byte, bool) {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) || ctx.Err() != nil {
					return 0, nil, false
				}
				data, err := d.GetInto(ctx, keys[i], r.file)
				if err != nil {
					readErr(i, err)
					continue
				}
				r.file = data
				return i, data, true
			}
		})
	} else {
		// Remote files: fetchers download ahead, workers check what
		// arrives, in any order (results are kept by index).
		type fetched struct {
			i    int
			data []byte
		}
		fetchers := opts.Fetchers
		if fetchers <= 0 {
			fetchers = DefaultFetchers
		}
		ch := make(chan fetched)
		var fwg sync.WaitGroup
		for range min(fetchers, len(keys)) {
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(keys) || ctx.Err() != nil {
						return
					}
					data, err := src.Get(ctx, keys[i])
					if err != nil {
						readErr(i, err)
						continue
					}
					select {
					case ch <- fetched{i, data}:
					case <-ctx.Done():
						return
					}
				}
			}()
		}
		go func() {
			fwg.Wait()
			close(ch)
		}()
		work(func(*fileReader) (int, []byte, bool) {
			// After a failure, what is still in flight is drained unread.
			for f := range ch {
				if ctx.Err() == nil {
					return f.i, f.data, true
				}
			}
			return 0, nil, false
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep, files := merge(results, opts.From)
	rep.Target = src.String()
	if starts == nil {
		if err := checkApprovals(ctx, src, results, rep); err != nil {
			return nil, err
		}
	} else {
		rep.Notes = append(rep.Notes, NoApprovalsNote)
	}
	if err := checkCheckpoints(ctx, view, opts, rep, files, workers, starts); err != nil {
		return nil, err
	}
	if err := checkTimestamps(ctx, view, opts, rep, files, workers); err != nil {
		return nil, err
	}
	if err := checkCosignatures(ctx, view, opts, rep); err != nil {
		return nil, err
	}
	finish(rep)
	if !rep.Checkpoint {
		rep.Notes = append(rep.Notes, NoCheckpointNote)
	}
	return rep, nil
}

// notRegular is the result for key, which is not a regular file: what it is
// instead.
func notRegular(key, what string) *fileResult {
	res := &fileResult{key: key}
	if chainID, _, err := ParseFileKey(key); err == nil {
		res.chainID = chainID
	}
	res.add(NoSeq, NotRegularFile, "%s: a reader's glob matches it but it is not a regular file of the trail; not followed, not opened", what)
	return res
}

// sortViolations orders by chain, seq, kind, file, detail.
func sortViolations(vs []Violation) {
	slices.SortFunc(vs, func(a, b Violation) int {
		if c := strings.Compare(a.ChainID, b.ChainID); c != 0 {
			return c
		}
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return strings.Compare(a.Detail, b.Detail)
	})
}

// checkpointsAsListed is a trail whose objects under store.CheckpointsPrefix
// (checkpoints, cosignatures, timestamps) are those listed at one moment.
type checkpointsAsListed struct {
	store.Reader
	names []string // sorted, as List returns them
}

func (c checkpointsAsListed) List(ctx context.Context, prefix string) ([]string, error) {
	switch {
	case strings.HasPrefix(prefix, store.CheckpointsPrefix):
		var out []string
		for _, n := range c.names {
			if strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
		return out, nil
	case strings.HasPrefix(store.CheckpointsPrefix, prefix):
		// A wider prefix: the rest as it is now, the checkpoints as listed.
		names, err := c.Reader.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		names = slices.DeleteFunc(names, func(n string) bool { return strings.HasPrefix(n, store.CheckpointsPrefix) })
		names = append(names, c.names...)
		slices.Sort(names)
		return names, nil
	}
	return c.Reader.List(ctx, prefix)
}

// besideCheckpoint returns the chain and size of a checkpoint's key, or of
// a cosignature's or timestamp's beside one.
func besideCheckpoint(key string) (chainID string, size int64, ok bool) {
	if id, size, err := store.ParseCheckpointKey(key); err == nil {
		return id, size, true
	}
	if id, size, _, err := store.ParseCosignatureKey(key); err == nil {
		return id, size, true
	}
	if id, size, err := store.ParseTimestampKey(key); err == nil {
		return id, size, true
	}
	return "", 0, false
}
