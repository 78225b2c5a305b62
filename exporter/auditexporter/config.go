package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/witness"
)

// Config defines the configuration of the agentaudit exporter.
type Config struct {
	// ChainID names this collector's hash chain. Every replica writing to
	// the same store needs its own. Default: the host name.
	ChainID string `mapstructure:"chain_id"`

	// MaxValueBytes limits one attribute value; longer values are truncated
	// and the SHA-256 of the full value is recorded. Default: 64 KiB.
	MaxValueBytes int `mapstructure:"max_value_bytes"`

	// MaxEntryBytes limits one entry: the sum of its text columns (values,
	// attributes JSON, validation). Past it, the largest values are
	// emptied, each flagged entry_truncated with its length and SHA-256.
	// Default: 1 MiB, 16 values at the default value limit.
	MaxEntryBytes int `mapstructure:"max_entry_bytes"`

	// Batch controls when the open batch is sealed into a Parquet object.
	Batch BatchConfig `mapstructure:"batch"`

	// File selects the local filesystem store.
	File *FileConfig `mapstructure:"file"`

	// S3 selects an S3 bucket, ideally under Object Lock.
	S3 *S3Config `mapstructure:"s3"`

	// Spool is the exporter's local state: the write-ahead log and, with
	// the S3 store, the sealed batches waiting for the bucket.
	Spool SpoolConfig `mapstructure:"spool"`

	// Checkpoint configures the signed checkpoints written after each batch.
	Checkpoint CheckpointConfig `mapstructure:"checkpoint"`

	// RequireAuthenticatedSource refuses the audit spans of a request
	// whose sender the collector did not authenticate (see sender.go), with
	// a permanent error (gRPC UNAUTHENTICATED, HTTP 401); nothing of them
	// is written. Off by default: their sender is then NULL.
	RequireAuthenticatedSource bool `mapstructure:"require_authenticated_source"`

	// Senders names authenticated senders, by their identity (an OIDC
	// subject, a certificate subject, or a name for a bearer token), with
	// the agents each may write for. When it is set, an entry naming an
	// agent its sender may not write for, or sent by a sender not listed,
	// is recorded and flagged sender_mismatch.
	Senders map[string]SenderConfig `mapstructure:"senders"`

	// Approvals turns the approval service on (docs/APPROVALS.md): off
	// when the section is absent.
	Approvals configoptional.Optional[ApprovalsConfig] `mapstructure:"approvals"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// SenderConfig is one authenticated sender.
type SenderConfig struct {
	// Agents are globs (path.Match: *, ?, [a-z]) over the agent an entry
	// names (agent_id and agent_name, or service_name when it has
	// neither); "*" allows any agent.
	Agents []string `mapstructure:"agents"`
	// TokenSHA256 is the SHA-256 (hex) of this sender's bearer token: a
	// request carrying that token (the receiver's include_metadata: true
	// hands it on) is sent by this sender. bearertokenauth checks tokens
	// but names no one.
	TokenSHA256 string `mapstructure:"token_sha256"`

	_ struct{}
}

// problems are what is wrong with sender id. (Config.Validate calls it,
// for every sender in order: a Validate method would be called by the
// collector in the map's random order.)
func (cfg *SenderConfig) problems(id string) []error {
	var errs []error
	where := fmt.Sprintf("\"senders\" %q: ", id)
	if len(cfg.Agents) == 0 {
		errs = append(errs, errors.New(where+`"agents" must list at least one glob ("*": any agent)`))
	}
	for _, g := range cfg.Agents {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			errs = append(errs, fmt.Errorf("%s\"agents\" %q is not a glob", where, g))
		}
	}
	if cfg.TokenSHA256 != "" {
		if b, err := hex.DecodeString(cfg.TokenSHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("%s\"token_sha256\" %q is not a SHA-256 in hex (64 digits): printf '%%s' \"$TOKEN\" | sha256sum", where, cfg.TokenSHA256))
		}
	}
	return errs
}

// BatchConfig bounds a batch. The first limit reached seals it.
type BatchConfig struct {
	MaxEntries int           `mapstructure:"max_entries"`
	MaxBytes   int           `mapstructure:"max_bytes"`
	MaxAge     time.Duration `mapstructure:"max_age"`

	_ struct{}
}

// FileConfig configures the local filesystem store.
type FileConfig struct {
	// Directory is the root of the trail: batches are written below it as
	// dt=YYYY-MM-DD/<chain_id>-<first seq>.parquet.
	Directory string `mapstructure:"directory"`

	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and reports every problem at once.
func (cfg *Config) Validate() error {
	var errs []error
	if !store.ValidChainID(cfg.ChainID) {
		errs = append(errs, fmt.Errorf("\"chain_id\" %q is invalid: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'", cfg.ChainID))
	}
	if cfg.MaxValueBytes <= 0 {
		errs = append(errs, errors.New("\"max_value_bytes\" must be positive"))
	}
	if cfg.MaxEntryBytes < entry.MinMaxEntryBytes {
		errs = append(errs, fmt.Errorf("\"max_entry_bytes\" %d is below the minimum %d", cfg.MaxEntryBytes, entry.MinMaxEntryBytes))
	} else if cfg.MaxEntryBytes < cfg.MaxValueBytes {
		errs = append(errs, fmt.Errorf("\"max_entry_bytes\" %d must be at least \"max_value_bytes\" %d", cfg.MaxEntryBytes, cfg.MaxValueBytes))
	}
	switch {
	case cfg.File == nil && cfg.S3 == nil:
		errs = append(errs, errors.New("no store is configured: set \"file\" or \"s3\""))
	case cfg.File != nil && cfg.S3 != nil:
		errs = append(errs, errors.New("\"file\" and \"s3\" are both set: choose one store"))
	}
	tokens := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(cfg.Senders)) {
		sc := cfg.Senders[id]
		if id == "" {
			errs = append(errs, errors.New("\"senders\": a sender's identity must not be empty"))
		}
		errs = append(errs, sc.problems(id)...)
		t := strings.ToLower(sc.TokenSHA256)
		if t == "" {
			continue
		}
		if other, ok := tokens[t]; ok {
			errs = append(errs, fmt.Errorf("\"senders\": %q and %q have the same \"token_sha256\"", other, id))
		}
		tokens[t] = id
	}
	return errors.Join(errs...)
}

// Validate checks the batch limits.
func (cfg *BatchConfig) Validate() error {
	var errs []error
	if cfg.MaxEntries <= 0 {
		errs = append(errs, errors.New("\"max_entries\" must be positive"))
	}
	if cfg.MaxBytes <= 0 {
		errs = append(errs, errors.New("\"max_bytes\" must be positive"))
	}
	if cfg.MaxAge <= 0 {
		errs = append(errs, errors.New("\"max_age\" must be positive"))
	}
	return errors.Join(errs...)
}

// Validate checks the file store settings.
func (cfg *FileConfig) Validate() error {
	if cfg.Directory == "" {
		return errors.New("\"directory\" must not be empty")
	}
	return nil
}

// S3Config configures the S3 store. Credentials come from the AWS SDK's
// default chain (environment, shared config, web identity/IRSA, instance
// roles), then RoleARN is assumed when set.
type S3Config struct {
	Bucket string `mapstructure:"bucket"`
	// Prefix is prepended to every object key ("agents" gives
	// agents/dt=YYYY-MM-DD/...).
	Prefix string `mapstructure:"prefix"`
	Region string `mapstructure:"region"`
	// Endpoint is for S3-compatible servers (MinIO, Versity Gateway, Ceph
	// RGW); leave it empty for AWS.
	Endpoint       string `mapstructure:"endpoint"`
	ForcePathStyle bool   `mapstructure:"force_path_style"`
	// ObjectLock sets retention on every object; the bucket must have
	// Object Lock enabled or the collector refuses to start.
	ObjectLock   *ObjectLockConfig `mapstructure:"object_lock"`
	StorageClass string            `mapstructure:"storage_class"`
	SSE          SSEConfig         `mapstructure:"sse"`
	RoleARN      string            `mapstructure:"role_arn"`

	_ struct{}
}

// ObjectLockConfig is the retention every object gets.
type ObjectLockConfig struct {
	Mode          string `mapstructure:"mode"` // compliance or governance
	RetentionDays int    `mapstructure:"retention_days"`
	LegalHold     bool   `mapstructure:"legal_hold"`

	_ struct{}
}

// SSEConfig selects server-side encryption with a KMS key.
type SSEConfig struct {
	KMSKeyID string `mapstructure:"kms_key_id"`

	_ struct{}
}

// SpoolConfig configures the exporter's local state: the write-ahead log
// (<directory>/wal) and, with the S3 store, the sealed batches waiting for
// the bucket (<directory>/batches).
type SpoolConfig struct {
	Directory string `mapstructure:"directory"`
	// MaxBytes bounds the batches waiting for the S3 store. Past it, new data
	// is refused with a retryable error until the bucket takes batches again.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// CommitDelay is how long the request that writes and fsyncs a group
	// of requests to the write-ahead log first waits for others to join,
	// when the previous group held more than one (concurrent load): fewer
	// fsyncs, each costly in CPU, for up to this much more latency. A lone
	// client never waits. 0 turns it off.
	CommitDelay time.Duration `mapstructure:"commit_delay"`

	_ struct{}
}

// maxCommitDelay bounds spool.commit_delay: every request of a group waits
// for it.
const maxCommitDelay = 100 * time.Millisecond

// Validate checks the S3 settings.
func (cfg *S3Config) Validate() error {
	var errs []error
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("\"bucket\" must not be empty"))
	}
	if strings.Contains(cfg.Prefix, "..") || strings.Contains(cfg.Prefix, "//") || strings.ContainsAny(cfg.Prefix, "\\\x00") {
		errs = append(errs, fmt.Errorf("\"prefix\" %q must be a clean path", cfg.Prefix))
	}
	if cfg.Endpoint != "" {
		if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("\"endpoint\" %q must be an http or https URL", cfg.Endpoint))
		}
	}
	if cfg.StorageClass != "" && !slices.Contains(types.StorageClass("").Values(), types.StorageClass(cfg.StorageClass)) {
		errs = append(errs, fmt.Errorf("\"storage_class\" %q is not an S3 storage class", cfg.StorageClass))
	}
	return errors.Join(errs...)
}

// Validate checks the Object Lock settings.
func (cfg *ObjectLockConfig) Validate() error {
	var errs []error
	if !strings.EqualFold(cfg.Mode, store.LockCompliance) && !strings.EqualFold(cfg.Mode, store.LockGovernance) {
		errs = append(errs, fmt.Errorf("\"mode\" %q is invalid: use %q or %q", cfg.Mode, store.LockCompliance, store.LockGovernance))
	}
	if cfg.RetentionDays <= 0 {
		errs = append(errs, errors.New("\"retention_days\" must be positive"))
	}
	return errors.Join(errs...)
}

// Validate checks the spool settings.
func (cfg *SpoolConfig) Validate() error {
	var errs []error
	if cfg.Directory == "" {
		errs = append(errs, errors.New("\"directory\" must not be empty"))
	}
	if cfg.MaxBytes <= 0 {
		errs = append(errs, errors.New("\"max_bytes\" must be positive"))
	}
	if cfg.CommitDelay < 0 || cfg.CommitDelay > maxCommitDelay {
		errs = append(errs, fmt.Errorf("\"commit_delay\" %v must be between 0 and %v", cfg.CommitDelay, maxCommitDelay))
	}
	return errors.Join(errs...)
}

// options translates the configuration for the store package.
func (cfg *S3Config) options() store.S3Options {
	o := store.S3Options{
		Bucket:         cfg.Bucket,
		Prefix:         cfg.Prefix,
		Region:         cfg.Region,
		Endpoint:       cfg.Endpoint,
		ForcePathStyle: cfg.ForcePathStyle,
		StorageClass:   cfg.StorageClass,
		KMSKeyID:       cfg.SSE.KMSKeyID,
		RoleARN:        cfg.RoleARN,
	}
	if l := cfg.ObjectLock; l != nil {
		o.ObjectLock = &store.ObjectLock{Mode: strings.ToLower(l.Mode), RetentionDays: l.RetentionDays, LegalHold: l.LegalHold}
	}
	return o
}

// CheckpointConfig configures signed checkpoints. The signing key is an
// Ed25519 key in the signed-note format ("PRIVATE+KEY+name+hash+key"), from
// a file or an environment variable; with neither, the exporter generates
// one on first start and keeps it in <spool.directory>/keys.
type CheckpointConfig struct {
	KeyFile string `mapstructure:"key_file"`
	KeyEnv  string `mapstructure:"key_env"`
	// Mirror also writes every checkpoint to a second location, a local
	// directory (for example a volume that another team owns).
	Mirror *FileConfig `mapstructure:"mirror"`
	// Witnesses get each checkpoint cosigned by witnesses speaking C2SP
	// tlog-witness, and their cosignatures stored beside it (witnesses.go).
	// None: no witness.
	Witnesses []WitnessConfig `mapstructure:"witnesses"`
	// Timestamp gets each checkpoint an RFC 3161 timestamp from a TSA,
	// stored beside it (timestamps.go): off when absent.
	Timestamp *TimestampConfig `mapstructure:"timestamp"`

	_ struct{}
}

// WitnessConfig is one witness the checkpoints are submitted to.
type WitnessConfig struct {
	// Name names the witness in the keys of its cosignatures
	// (checkpoints/<chain_id>/<size>.checkpoint.cosig.<name>) and in the
	// metrics.
	Name string `mapstructure:"name"`
	// URL is its submission prefix: checkpoints are POSTed to
	// <url>/add-checkpoint.
	URL string `mapstructure:"url"`
	// Key is its cosignature verifier key (note format
	// "name+hash+key", as auditctl witness keygen prints it).
	Key string `mapstructure:"key"`
	// Timeout bounds one submission. Default: 10s.
	Timeout time.Duration `mapstructure:"timeout"`

	_ struct{}
}

// Validate checks the checkpoint settings.
func (cfg *CheckpointConfig) Validate() error {
	var errs []error
	if cfg.KeyFile != "" && cfg.KeyEnv != "" {
		errs = append(errs, errors.New("\"key_file\" and \"key_env\" are both set: choose one"))
	}
	names := map[string]bool{}
	for i, w := range cfg.Witnesses {
		errs = append(errs, w.problems(i)...)
		if names[w.Name] && w.Name != "" {
			errs = append(errs, fmt.Errorf("\"witnesses\": %q is named twice", w.Name))
		}
		names[w.Name] = true
	}
	return errors.Join(errs...)
}

// problems are what is wrong with witness i. (CheckpointConfig.Validate
// calls it, to check the names across witnesses too.)
func (cfg *WitnessConfig) problems(i int) []error {
	var errs []error
	where := fmt.Sprintf("\"witnesses\"[%d]: ", i)
	if !store.ValidWitnessName(cfg.Name) {
		errs = append(errs, fmt.Errorf("%s\"name\" %q is invalid: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'", where, cfg.Name))
	}
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s\"url\" %q must be an http or https URL", where, cfg.URL))
	}
	if _, err := witness.NewVerifier(cfg.Key); err != nil {
		errs = append(errs, fmt.Errorf("%s\"key\" is not a witness verifier key (name+hash+key): %w", where, err))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s\"timeout\" %v must not be negative", where, cfg.Timeout))
	}
	return errs
}
