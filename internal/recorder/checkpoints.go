package recorder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// signingKey returns the checkpoint signer key the configuration names, or
// the one generated on first start under <spool.directory>/keys.
func (r *Recorder) signingKey() (string, error) {
	cfg := r.cfg.Checkpoint
	switch {
	case cfg.KeyFile != "":
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return "", fmt.Errorf("checkpoint: \"key_file\": %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case cfg.KeyEnv != "":
		k := strings.TrimSpace(os.Getenv(cfg.KeyEnv))
		if k == "" {
			return "", fmt.Errorf("checkpoint: \"key_env\": environment variable %s is empty or unset", cfg.KeyEnv)
		}
		return k, nil
	}
	path := filepath.Join(r.cfg.SpoolDir, "keys", r.cfg.ChainID+".key")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint: reading the generated key: %w", err)
	}
	skey, vkey, err := checkpoint.GenerateKey(r.cfg.ChainID)
	if err != nil {
		return "", fmt.Errorf("checkpoint: generating a key: %w", err)
	}
	keys, err := store.NewFS(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	// Written once, read-only, fsynced: the key must outlive crashes.
	if err := keys.Put(context.Background(), filepath.Base(path), []byte(skey+"\n")); err != nil {
		return "", fmt.Errorf("checkpoint: saving the generated key: %w", err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	r.logger.Info("Generated a checkpoint signing key; its public key is published beside the trail",
		zap.String("key_file", path), zap.String("verifier_key", vkey))
	return skey, nil
}

// setUpCheckpoints loads the signing key; the writer publishes its verifier
// key beside the trail (and in the mirror) before the first batch.
func (r *Recorder) setUpCheckpoints() error {
	skey, err := r.signingKey()
	if err != nil {
		return err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return fmt.Errorf("checkpoint: the signing key is not a signed-note Ed25519 key: %w", err)
	}
	vkey, err := checkpoint.VerifierKey(skey)
	if err != nil {
		return err
	}
	if m := r.cfg.Checkpoint.MirrorDir; m != "" {
		if r.mirror, err = store.NewFS(m); err != nil {
			return fmt.Errorf("checkpoint: mirror: \"directory\" %q: %w", m, err)
		}
	}
	r.vkey = vkey
	r.signer = signer
	return nil
}

// publishKey writes the verifier key where batches go, and to the mirror,
// retrying until it is written. It returns the key, or false when shutdown
// gave up.
func (r *Recorder) publishKey(target store.Store, where string) (string, bool) {
	key := store.VerifierKeyKey(r.cfg.ChainID, r.vkey)
	data := []byte(r.vkey + "\n")
	ctx := context.Background()
	if !r.retry(where, key, func() error { return target.Put(ctx, key, data) }) {
		return "", false
	}
	if r.mirror != nil && !r.retry("mirror", key, func() error { return r.mirror.Put(ctx, key, data) }) {
		return "", false
	}
	return key, true
}

// writeCheckpoint signs the checkpoint of the batch whose footer is f and
// writes it where the batch went, and to the mirror. It returns the key, or
// "" when shutdown gave up.
func (r *Recorder) writeCheckpoint(target store.Store, where string, f parquetfile.Footer) (string, []byte, bool) {
	msg, err := checkpoint.Sign(checkpoint.Checkpoint{
		ChainID: f.ChainID, Size: f.LastSeq + 1, Head: f.LastHash,
		BatchFirst: f.FirstSeq, BatchLast: f.LastSeq, BatchRoot: f.MerkleRoot,
	}, r.signer)
	if err != nil {
		// Only a malformed footer makes signing fail; the batch is written.
		r.logger.Error("Cannot sign a checkpoint", zap.Error(err))
		return "", nil, true
	}
	key := store.CheckpointKey(f.ChainID, f.LastSeq+1)
	ctx := context.Background()
	if !r.retry(where, key, func() error { return target.Put(ctx, key, msg) }) {
		return "", nil, false
	}
	if r.mirror != nil && !r.retry("mirror", key, func() error { return r.mirror.Put(ctx, key, msg) }) {
		return "", nil, false
	}
	return key, msg, true
}
