package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/storetest"
)

// The behaviour table of internal/storetest, against every implementation
// here (storetest runs it against its fake).

func TestBehaviourFS(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.NewFS(t.TempDir())
		require.NoError(t, err)
		return s
	})
}

// TestBehaviourDir: the read-only directory reads what FS wrote.
func TestBehaviourDir(t *testing.T) {
	storetest.RunReader(t, func(t *testing.T) (store.Store, store.Reader) {
		dir := t.TempDir()
		s, err := store.NewFS(dir)
		require.NoError(t, err)
		return s, store.Dir(dir)
	})
}

func TestBehaviourS3(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		w, _ := newS3Pair(t)
		return w
	})
}

// TestBehaviourS3Reader: an auditor's reader of the bucket (no Object Lock
// configured, its own client) reads what the writer wrote.
func TestBehaviourS3Reader(t *testing.T) {
	storetest.RunReader(t, func(t *testing.T) (store.Store, store.Reader) { return newS3Pair(t) })
}

// newS3Pair starts a server (under CI=true a failure to start fails the
// test) and returns a writer with Object Lock and a plain reader of the
// same bucket and prefix.
func newS3Pair(t *testing.T) (*store.S3, *store.S3) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	srv.SetEnv(t)
	open := func(lock *store.ObjectLock) *store.S3 {
		s, err := store.NewS3(context.Background(), store.S3Options{
			Bucket: "trail", Prefix: "agents", Endpoint: srv.Endpoint, ForcePathStyle: true, Region: s3test.Region,
			ObjectLock: lock, Now: func() time.Time { return time.Date(2030, 3, 9, 0, 0, 0, 0, time.UTC) },
		})
		require.NoError(t, err)
		require.NoError(t, s.Check(context.Background()))
		return s
	}
	return open(&store.ObjectLock{Mode: store.LockCompliance, RetentionDays: 1}), open(nil)
}
