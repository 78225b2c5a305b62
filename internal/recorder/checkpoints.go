package recorder

// Checkpoints: the signing key, the verifier key published beside the
// trail, and the signed checkpoint of each batch.

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

// checkpointer signs the checkpoints of one chain. It writes nothing: the
// sealer writes what it makes where the batch goes, and to the mirror.
type checkpointer struct {
	chainID string
	signer  note.Signer // signs a checkpoint after each batch
	vkey    string      // its verifier key, published beside the trail
	mirror  *store.FS   // a second place for checkpoints, or nil
}

// newCheckpointer loads the signing key cfg names (or the one generated
// under the spool directory) and opens the mirror.
func newCheckpointer(cfg Config, logger *zap.Logger) (*checkpointer, error) {
	skey, err := signingKey(cfg, logger)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: the signing key is not a signed-note Ed25519 key: %w", err)
	}
	vkey, err := checkpoint.VerifierKey(skey)
	if err != nil {
		return nil, err
	}
	c := &checkpointer{chainID: cfg.ChainID, signer: signer, vkey: vkey}
	if m := cfg.Checkpoint.MirrorDir; m != "" {
		if c.mirror, err = store.NewFS(m); err != nil {
			return nil, fmt.Errorf("checkpoint: mirror: \"directory\" %q: %w", m, err)
		}
	}
	return c, nil
}

// verifierKey is the object that publishes the verifier key beside the
// trail, before the first batch.
func (c *checkpointer) verifierKey() (key string, data []byte) {
	return store.VerifierKeyKey(c.chainID, c.vkey), []byte(c.vkey + "\n")
}

// sign returns the signed checkpoint of the batch whose footer is f, and
// its key: of format 2 with root, the hex root of the chain's tree after
// the batch, or of format 1 when root is "" (the tree failed).
func (c *checkpointer) sign(f parquetfile.Footer, root string) (key string, msg []byte, err error) {
	msg, err = checkpoint.Sign(checkpoint.Checkpoint{
		ChainID: f.ChainID, Size: f.LastSeq + 1, Root: root, Head: f.LastHash,
		BatchFirst: f.FirstSeq, BatchLast: f.LastSeq, BatchRoot: f.MerkleRoot,
	}, c.signer)
	if err != nil {
		return "", nil, err
	}
	return store.CheckpointKey(f.ChainID, f.LastSeq+1), msg, nil
}

// signingKey returns the checkpoint signer key the configuration names, or
// the one generated on first start under <spool.directory>/keys.
func signingKey(cfg Config, logger *zap.Logger) (string, error) {
	cp := cfg.Checkpoint
	switch {
	case cp.KeyFile != "":
		b, err := os.ReadFile(cp.KeyFile)
		if err != nil {
			return "", fmt.Errorf("checkpoint: \"key_file\": %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case cp.KeyEnv != "":
		k := strings.TrimSpace(os.Getenv(cp.KeyEnv))
		if k == "" {
			return "", fmt.Errorf("checkpoint: \"key_env\": environment variable %s is empty or unset", cp.KeyEnv)
		}
		return k, nil
	}
	path := filepath.Join(cfg.SpoolDir, "keys", cfg.ChainID+".key")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint: reading the generated key: %w", err)
	}
	skey, vkey, err := checkpoint.GenerateKey(cfg.ChainID)
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
	logger.Info("Generated a checkpoint signing key; its public key is published beside the trail",
		zap.String("key_file", path), zap.String("verifier_key", vkey))
	return skey, nil
}
