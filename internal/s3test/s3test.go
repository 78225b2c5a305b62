// Package s3test runs a real S3 server, Versity Gateway, for tests.
//
// Tests that need S3 call Start. When the versitygw binary cannot be found
// or the server does not come up, the test is skipped on a developer's
// machine and fails under CI=true: CI must never pass by skipping.
// .ci/run installs the binary (go install
// github.com/versity/versitygw/cmd/versitygw@v1.8.0).
package s3test // import "github.com/agentaudit/agentaudit/internal/s3test"

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Credentials of the server's root account.
const (
	AccessKey = "agentaudit-test"
	SecretKey = "agentaudit-test-secret-key"
	Region    = "us-east-1"
)

// Server is a running Versity Gateway on 127.0.0.1 with a posix backend.
type Server struct {
	t        testing.TB
	Endpoint string // http://127.0.0.1:PORT
	addr     string
	root     string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	logs     *os.File
}

// Binary returns the path of versitygw: $VERSITYGW, then $PATH, then
// $GOPATH/bin (where go install puts it).
func Binary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found in $VERSITYGW, $PATH or %s: install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`", p)
	}
	return p, nil
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("S3 test server unavailable under CI=true: %v", err)
	}
	t.Skipf("S3 test server unavailable: %v", err)
}

// Start runs a new server with its own empty storage and stops it when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		unavailable(t, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		unavailable(t, err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{t: t, Endpoint: "http://" + addr, addr: addr, root: t.TempDir()}
	for _, d := range []string{"data", "versions", "sidecar"} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.logs, err = os.Create(filepath.Join(s.root, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logs.Name()); err == nil {
				t.Logf("versitygw logs:\n%s", b)
			}
		}
		s.logs.Close()
	})
	if err := s.start(bin); err != nil {
		unavailable(t, err)
	}
	return s
}

func (s *Server) start(bin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(bin, "--port", s.addr, "posix",
		"--versioning-dir", filepath.Join(s.root, "versions"),
		"--sidecar", filepath.Join(s.root, "sidecar"),
		filepath.Join(s.root, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited at start (see %s)", s.logs.Name())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("versitygw did not listen on %s within 30s", s.addr)
}

// Stop stops the server; its storage is kept for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts the server again on the same address and storage.
func (s *Server) Restart() {
	s.t.Helper()
	bin, err := Binary()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.start(bin); err != nil {
		s.t.Fatal(err)
	}
}

// Client returns an S3 client for the server's root account.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		// Plain headers only, like the store.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Env returns environment settings that make the AWS SDK's default
// credential chain find the server's root account, for processes (such as
// the collector) started by a test.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env in the test process for the rest of the test.
func (s *Server) SetEnv(t *testing.T) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// CreateBucket creates a bucket, with Object Lock enabled when locked.
func (s *Server) CreateBucket(name string, locked bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if locked {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := s.Client().CreateBucket(ctx, in); err != nil {
		s.t.Fatalf("creating bucket %q: %v", name, err)
	}
	if locked {
		_, err := s.Client().PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
			Bucket:                  aws.String(name),
			ObjectLockConfiguration: &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled},
		})
		if err != nil {
			s.t.Fatalf("enabling Object Lock on %q: %v", name, err)
		}
	}
}
