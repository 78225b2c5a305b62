package auditexporter

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configauth"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
)

func TestUnmarshalConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id       component.ID
		expected component.Config
	}{
		{
			id:       component.NewID(metadata.Type),
			expected: createDefaultConfig(),
		},
		{
			id: component.NewIDWithName(metadata.Type, "customname"),
			expected: &Config{
				ChainID:       "collector-1",
				MaxValueBytes: 1024,
				MaxEntryBytes: 256 << 10,
				File:          &FileConfig{Directory: "/var/lib/agentaudit"},
				Batch:         BatchConfig{MaxEntries: 500, MaxBytes: 1 << 20, MaxAge: 2 * time.Second},
				Spool:         SpoolConfig{Directory: defaultSpoolDirectory, MaxBytes: defaultSpoolMaxBytes, CommitDelay: defaultCommitDelay},
				Approvals:     configoptional.Default(defaultApprovalsConfig()),
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "s3"),
			expected: &Config{
				ChainID:       "collector-1",
				MaxValueBytes: 64 << 10,
				MaxEntryBytes: 1 << 20,
				S3: &S3Config{
					Bucket:         "audit-trail",
					Prefix:         "agents",
					Region:         "us-east-1",
					Endpoint:       "http://127.0.0.1:7070",
					ForcePathStyle: true,
					ObjectLock:     &ObjectLockConfig{Mode: "compliance", RetentionDays: 2557},
					StorageClass:   "STANDARD",
				},
				Spool:     SpoolConfig{Directory: "/var/lib/agentaudit/spool", MaxBytes: 2 << 30, CommitDelay: 500 * time.Microsecond},
				Batch:     BatchConfig{MaxEntries: defaultMaxEntries, MaxBytes: defaultMaxBytes, MaxAge: defaultMaxAge},
				Approvals: configoptional.Default(defaultApprovalsConfig()),
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "senders"),
			expected: &Config{
				ChainID:                    "collector-1",
				MaxValueBytes:              64 << 10,
				MaxEntryBytes:              1 << 20,
				File:                       &FileConfig{Directory: "./audit-data"},
				Spool:                      SpoolConfig{Directory: defaultSpoolDirectory, MaxBytes: defaultSpoolMaxBytes, CommitDelay: defaultCommitDelay},
				Batch:                      BatchConfig{MaxEntries: defaultMaxEntries, MaxBytes: defaultMaxBytes, MaxAge: defaultMaxAge},
				RequireAuthenticatedSource: true,
				Senders: map[string]SenderConfig{
					"billing-bot":            {Agents: []string{"billing-*", "Billing agent"}, TokenSHA256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"},
					"CN=crm-agent,O=Example": {Agents: []string{"*"}},
				},
				Approvals: configoptional.Default(defaultApprovalsConfig()),
			},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "approvals"),
			expected: approvalsExpected(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			assert.Equal(t, tt.expected, cfg)
		})
	}
}

// approvalsExpected is agentaudit/approvals of testdata/config.yaml: the
// defaults of the approvals section where it says nothing.
func approvalsExpected() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.ChainID = "collector-1"
	cfg.File = &FileConfig{Directory: "./audit-data"}
	a := defaultApprovalsConfig()
	a.Auth = configoptional.Some(confighttp.AuthConfig{Config: configauth.Config{AuthenticatorID: component.MustNewID("bearertokenauth")}})
	a.Reviewers = []string{"alice@example.com"}
	a.ReviewerClaim = &ReviewerClaimConfig{Name: "groups", Value: "approvers"}
	a.Expiry.Default = 15 * time.Minute
	a.Policies = []ApprovalPolicyConfig{
		{Name: "crm-contact-writes", Decide: "person", Systems: []string{"HubSpot CRM"}, Resources: []string{"Contact *"}},
		{Name: "sandbox", Decide: "auto", Tools: []string{"sandbox_*"}},
	}
	cfg.Approvals = configoptional.Some(a)
	return cfg
}

func TestApprovalsOffByDefault(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	assert.False(t, cfg.Approvals.HasValue(), "the approval service is off unless its section is set")
	a := defaultApprovalsConfig()
	assert.Equal(t, "127.0.0.1:4320", a.NetAddr.Endpoint, "the API listens on loopback by default")
	assert.Greater(t, a.WriteTimeout, maxApprovalWait, "a long poll answers before the server's write timeout")
}

func TestDefaultConfigNeedsAStore(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	assert.False(t, cfg.RequireAuthenticatedSource, "unauthenticated senders are accepted by default")
	assert.Nil(t, cfg.Senders, "no senders policy by default")
	assert.NotEmpty(t, cfg.ChainID, "the chain id defaults to the host name")
	assert.EqualError(t, confmap.Validate(cfg), `no store is configured: set "file" or "s3"`)
	cfg.File = &FileConfig{Directory: "./audit-data"}
	assert.NoError(t, confmap.Validate(cfg))
}

func TestUnmarshalInvalidConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "invalid_configs.yaml"))
	require.NoError(t, err)
	tests := []struct {
		name     string
		errorMsg string
	}{
		{name: "no_store", errorMsg: `no store is configured: set "file" or "s3"`},
		{name: "bad_chain_id", errorMsg: `"chain_id" "collector/1" is invalid: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'`},
		{name: "empty_directory", errorMsg: `file: "directory" must not be empty`},
		{name: "bad_batch", errorMsg: "batch: \"max_entries\" must be positive\n\"max_bytes\" must be positive\n\"max_age\" must be positive"},
		{name: "bad_max_value_bytes", errorMsg: `"max_value_bytes" must be positive`},
		{name: "bad_max_entry_bytes", errorMsg: `"max_entry_bytes" 131072 must be at least "max_value_bytes" 262144`},
		{name: "many_problems", errorMsg: "\"chain_id\" \"\" is invalid: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'\n\"max_value_bytes\" must be positive\n\"max_entry_bytes\" 0 is below the minimum 65536\nno store is configured: set \"file\" or \"s3\""},
		{name: "both_stores", errorMsg: `"file" and "s3" are both set: choose one store`},
		{name: "bad_s3", errorMsg: "s3: \"bucket\" must not be empty\n\"prefix\" \"a/../b\" must be a clean path\n\"endpoint\" \"127.0.0.1:7070\" must be an http or https URL\n\"storage_class\" \"FAST\" is not an S3 storage class"},
		{name: "bad_object_lock", errorMsg: "s3::object_lock: \"mode\" \"forever\" is invalid: use \"compliance\" or \"governance\"\n\"retention_days\" must be positive"},
		{name: "two_keys", errorMsg: `checkpoint: "key_file" and "key_env" are both set: choose one`},
		{name: "bad_senders", errorMsg: "\"senders\": a sender's identity must not be empty\n" +
			"\"senders\" \"bad-glob\": \"agents\" \"crm-[\" is not a glob\n" +
			"\"senders\" \"bad-glob\": \"agents\" \"\" is not a glob\n" +
			"\"senders\" \"no-agents\": \"agents\" must list at least one glob (\"*\": any agent)\n" +
			"\"senders\" \"no-agents\": \"token_sha256\" \"9f86\" is not a SHA-256 in hex (64 digits): printf '%s' \"$TOKEN\" | sha256sum\n" +
			"\"senders\": \"bad-glob\" and \"same-token\" have the same \"token_sha256\""},
		{name: "approvals_no_auth", errorMsg: "approvals: \"auth\" must name an authenticator: a decision records the reviewer's authenticated identity\n" +
			"\"reviewers\" or \"reviewer_claim\" must say who may decide"},
		{name: "bad_approvals", errorMsg: "approvals: \"reviewers\" [1] is empty\n" +
			"\"reviewer_claim\" needs a \"name\" and a \"value\"\n" +
			"\"expiry\": \"default\" 48h0m0s is past \"max\" 24h0m0s\n" +
			"\"policies\" [0]: invalid approval policy: \"name\" must not be empty\n" +
			"\"policies\" [2]: \"name\" \"p\" is used twice"},
		{name: "empty_spool", errorMsg: "spool: \"directory\" must not be empty\n\"max_bytes\" must be positive\n\"commit_delay\" 1s must be between 0 and 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.name)
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			assert.EqualError(t, confmap.Validate(cfg), tt.errorMsg)
		})
	}
}

func TestDefaultChainIDIsKeySafe(t *testing.T) {
	id := defaultChainID()
	assert.Regexp(t, `^[A-Za-z0-9._-]{1,128}$`, id)
}
