package browsertest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// alive returns the command lines of the processes, zombies aside, that
// are in process group pgid or name dir in their command line (Chromium's
// crash handlers leave the group but keep their database in dir).
func alive(t *testing.T, pgid int, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		cmd := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		if fields[2] == strconv.Itoa(pgid) || strings.Contains(cmd, dir) {
			found = append(found, cmd)
		}
	}
	return found
}

// waitGone waits until nothing of the browser runs and its directory is
// removed.
func waitGone(t *testing.T, pgid int, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := alive(t, pgid, dir)
		_, err := os.Stat(dir)
		if len(procs) == 0 && os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, still running: %q; directory %s: %v", procs, dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start's cleanup ends the session, then everything in the group.
func TestStartCleanupStopsEverything(t *testing.T) {
	var pgid int
	var dir string
	t.Run("start", func(t *testing.T) {
		b := Start(t)
		pgid, dir = b.d.pgid, b.d.dir
		if procs := alive(t, pgid, dir); len(procs) < 2 {
			t.Fatalf("running: %q, want chromedriver and Chromium", procs)
		}
		if err := b.Open("data:text/html,<p id=p>own</p>"); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Texts("#p"); err != nil || len(got) != 1 || got[0] != "own" {
			t.Errorf("Texts = %q, %v, want [own]", got, err)
		}
	})
	if pgid == 0 {
		return // skipped
	}
	waitGone(t, pgid, dir)
}

// When the test binary dies without cleaning up (a test timeout panics
// past every cleanup; here SIGKILL), the watchdog kills the group and
// removes the directory. The binary runs itself to have something to kill.
func TestWatchdogStopsEverythingWhenTheBinaryDies(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperDie$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "BROWSERTEST_HELPER=die")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var pgid int
	var dir string
	for sc := bufio.NewScanner(stdout); sc.Scan(); {
		fmt.Fprintln(&out, sc.Text())
		if _, err := fmt.Sscanf(sc.Text(), "BROWSER %d %s", &pgid, &dir); err == nil {
			break
		}
	}
	if pgid == 0 {
		cmd.Wait()
		if strings.Contains(out.String(), "headless Chromium unavailable") {
			unavailable(t, fmt.Errorf("in the child: %s", out.String()))
		}
		t.Fatalf("the child did not start a browser:\n%s", out.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, pgid, dir)
}

// TestHelperDie is run by TestWatchdogStopsEverythingWhenTheBinaryDies; on
// its own it does nothing.
func TestHelperDie(t *testing.T) {
	if os.Getenv("BROWSERTEST_HELPER") != "die" {
		return
	}
	b := Start(t)
	if err := b.Open("data:text/html,<p>busy</p>"); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BROWSER %d %s\n", b.d.pgid, b.d.dir)
	time.Sleep(time.Minute) // killed meanwhile
	t.Error("not killed within a minute")
}
