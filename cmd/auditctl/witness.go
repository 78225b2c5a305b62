package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/spoollock"
	"github.com/agentaudit/agentaudit/internal/witness"
)

const witnessUsage = `usage:
  auditctl witness serve --state DIR --key KEY_FILE --log ORIGIN=VKEY_FILE [--log ...] [--listen 127.0.0.1:8090]
      a C2SP tlog-witness for the logs given (ORIGIN: a checkpoint's first
      line, agentaudit/<chain_id>; VKEY_FILE: its verifier keys, one per
      line): cosigns a checkpoint only when it consistently extends the last
      one it cosigned for the log, kept in DIR; refused checkpoints the log
      signed are kept in DIR/inconsistent as evidence
      prints its verifier key and address; runs until interrupted
      exit 0 stopped, 2 could not run
  auditctl witness keygen [--ml-dsa] [--out KEY_FILE] NAME
      a new witness key pair named NAME (a URL-like name, witness.example/w1):
      the signer key (to KEY_FILE, created 0600, or printed first) and the
      verifier key to give to auditors and logs
      exit 0 made, 2 could not run
`

func runWitness(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runWitnessServe(ctx, args[1:], stdout, stderr)
		case "keygen":
			return runWitnessKeygen(args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, witnessUsage)
			return exitIntact
		}
	}
	fmt.Fprint(stderr, witnessUsage)
	return exitError
}

// logFlags collects the repeated --log ORIGIN=VKEY_FILE.
type logFlags []string

func (l *logFlags) String() string     { return strings.Join(*l, " ") }
func (l *logFlags) Set(v string) error { *l = append(*l, v); return nil }

func runWitnessServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var state, keyFile, listen string
	var logs logFlags
	fs := flag.NewFlagSet("auditctl witness serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, witnessUsage); fs.PrintDefaults() }
	fs.StringVar(&state, "state", "", "directory of the witness's state: the last checkpoint cosigned per log")
	fs.StringVar(&keyFile, "key", "", "file holding the witness's signer key (auditctl witness keygen)")
	fs.Var(&logs, "log", "ORIGIN=VKEY_FILE: a log to witness and the file of its checkpoint verifier keys (repeatable)")
	fs.StringVar(&listen, "listen", "127.0.0.1:8090", "address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitIntact
		}
		return exitError
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if state == "" {
		problems = append(problems, "--state is required")
	}
	if keyFile == "" {
		problems = append(problems, "--key is required")
	}
	if len(logs) == 0 {
		problems = append(problems, "at least one --log ORIGIN=VKEY_FILE is required")
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "auditctl witness serve: %s\n%s", strings.Join(problems, "; "), witnessUsage)
		return exitError
	}
	signer, vkey, err := readWitnessKey(keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness serve: --key %s: %v\n", keyFile, err)
		return exitError
	}
	cfg := witness.Config{StateDir: state, Signers: []note.Signer{signer}}
	for _, l := range logs {
		origin, file, ok := strings.Cut(l, "=")
		if !ok || origin == "" || file == "" {
			fmt.Fprintf(stderr, "auditctl witness serve: --log %q: want ORIGIN=VKEY_FILE\n", l)
			return exitError
		}
		vs, err := readLogKeys(file)
		if err != nil {
			fmt.Fprintf(stderr, "auditctl witness serve: --log %s: %v\n", origin, err)
			return exitError
		}
		cfg.Logs = append(cfg.Logs, witness.Log{Origin: origin, Verifiers: vs})
	}
	// One witness per state directory: two would each check the old
	// size against their own memory and could cosign a rollback.
	lock, err := spoollock.Acquire(state)
	if errors.Is(err, spoollock.ErrInUse) {
		fmt.Fprintf(stderr, "auditctl witness serve: state directory %s is in use by another process (%s holds a lock on it)\n", state, spoollock.FileName)
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness serve: --state: %v\n", err)
		return exitError
	}
	defer lock.Release()
	srv, err := witness.NewServer(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness serve: %v\n", err)
		return exitError
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness serve: %v\n", err)
		return exitError
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(stdout, "witness %s serving %s on http://%s/\n", vkey, plural(len(cfg.Logs), "log"), ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		// Requests in flight finish: a cosignature answered is durable.
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdown)
		return exitIntact
	case err := <-errc:
		fmt.Fprintf(stderr, "auditctl witness serve: %v\n", err)
		return exitError
	}
}

// readWitnessKey reads a signer key file (one "PRIVATE+KEY+..." line)
// and derives its verifier key.
func readWitnessKey(file string) (note.Signer, string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	skey := strings.TrimSpace(string(data))
	signer, err := witness.NewSigner(skey)
	if err != nil {
		return nil, "", err
	}
	vkey, err := witness.VerifierKey(skey)
	return signer, vkey, err
}

// readLogKeys reads a log's verifier keys, one per line; blank lines and
// lines starting with # are skipped. Ed25519 note keys and the other
// kinds transparency-dev/formats reads (ECDSA, RFC 6962 STH) are taken.
func readLogKeys(file string) ([]note.Verifier, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var vs []note.Verifier
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := fnote.NewVerifier(line)
		if err != nil {
			return nil, fmt.Errorf("%s: verifier key %q: %w", file, line, err)
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%s: no verifier key in it", file)
	}
	return vs, nil
}

func runWitnessKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("auditctl witness keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, witnessUsage); fs.PrintDefaults() }
	mldsa := fs.Bool("ml-dsa", false, "an ML-DSA-44 key (post-quantum, as the spec recommends for new witnesses) instead of Ed25519")
	out := fs.String("out", "", "write the signer key to this new file (mode 0600) instead of printing it")
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl witness keygen: want one NAME, got %d\n%s", len(positional), witnessUsage)
		return exitError
	}
	skey, vkey, err := witness.GenerateKey(positional[0], *mldsa)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness keygen: name %q: %v\n", positional[0], err)
		return exitError
	}
	if *out == "" {
		fmt.Fprintln(stdout, skey)
		fmt.Fprintln(stdout, vkey)
		return exitIntact
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl witness keygen: --out: %v\n", err)
		return exitError
	}
	_, werr := fmt.Fprintln(f, skey)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		fmt.Fprintf(stderr, "auditctl witness keygen: --out: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, vkey)
	return exitIntact
}
