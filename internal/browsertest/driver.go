package browsertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// WebDriverError is an error answer of chromedriver: the W3C error code
// ("no such element", "javascript error", "invalid session id", ...) and
// its message.
type WebDriverError struct {
	Status  int    // HTTP status
	Code    string // W3C error code
	Message string
}

func (e *WebDriverError) Error() string {
	return fmt.Sprintf("webdriver: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// binaries returns the paths of chromedriver and of the browser it drives:
// $CHROMEDRIVER, else chromedriver in $PATH; $CHROME_BIN, else the first of
// chromium, chromium-browser, google-chrome, google-chrome-stable in $PATH,
// else /usr/bin/chromium (Debian's chromium package).
func binaries() (driver, browser string, err error) {
	driver = os.Getenv("CHROMEDRIVER")
	if driver == "" {
		if driver, err = exec.LookPath("chromedriver"); err != nil {
			return "", "", fmt.Errorf("chromedriver not found in $CHROMEDRIVER or $PATH (Debian: apt-get install chromium chromium-driver): %w", err)
		}
	}
	browser = os.Getenv("CHROME_BIN")
	if browser != "" {
		return driver, browser, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return driver, p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return driver, "/usr/bin/chromium", nil
	}
	return "", "", errors.New("chromium not found in $CHROME_BIN, $PATH or /usr/bin/chromium (Debian: apt-get install chromium chromium-driver)")
}

// driver is one chromedriver process. It runs in a process group of its
// own, so the browser it starts (and the browser's helpers) can be stopped
// with it. A watchdog shell, in another group, holds the read end of a pipe
// whose only write end is ours: when this process ends, however it ends
// (a test timeout panics without running cleanups), the watchdog reads EOF,
// kills the group and removes the temporary directory.
type driver struct {
	pgid     int // chromedriver's pid, and its process group's id
	stopped  bool
	base     string // http://127.0.0.1:PORT
	dir      string // temporary: chromedriver.log, the browser profiles
	logPath  string
	cmd      *exec.Cmd
	watchdog *exec.Cmd
	release  *os.File // the pipe's write end; closing it fires the watchdog
	client   *http.Client
}

const watchdogScript = `trap '' INT TERM HUP
read _
kill -KILL "-$1" 2>/dev/null
rm -rf -- "$2" 2>/dev/null || { sleep 1; rm -rf -- "$2"; }`

// startDriver starts chromedriver on a free loopback port and waits until
// its /status says it is ready. chromedriver accepts local connections only.
func startDriver(bin string) (*driver, error) {
	var err error
	// The port is picked by listening and closing; another process may take
	// it in between, so try a few times.
	for attempt := 0; attempt < 3; attempt++ {
		var d *driver
		if d, err = tryStartDriver(bin); err == nil {
			return d, nil
		}
	}
	return nil, err
}

func tryStartDriver(bin string) (*driver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	dir, err := os.MkdirTemp("", "browsertest-")
	if err != nil {
		return nil, err
	}
	d := &driver{
		base:    "http://127.0.0.1:" + strconv.Itoa(port),
		dir:     dir,
		logPath: filepath.Join(dir, "chromedriver.log"),
		client: &http.Client{
			Timeout: 2 * time.Minute,
			// No keep-alive: no connection goroutines outlive a command,
			// so a browser shared across a package's tests does not trip
			// goleak, and commands to 127.0.0.1 cost little to connect.
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		},
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close() // the children keep their own descriptors
	d.cmd = exec.Command(bin, "--port="+strconv.Itoa(port), "--log-level=INFO")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Chromium keeps crash reports (its crashpad handler runs even so) and
	// caches under these, not under --user-data-dir: keep them in dir too.
	d.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	pgid := d.cmd.Process.Pid
	d.pgid = pgid

	r, w, err := os.Pipe()
	if err != nil {
		d.killGroup()
		os.RemoveAll(dir)
		return nil, err
	}
	d.release = w
	d.watchdog = exec.Command("/bin/sh", "-c", watchdogScript, "browsertest-watchdog", strconv.Itoa(pgid), dir)
	d.watchdog.Stdin = r
	// Its own group: Ctrl-C at a terminal must not kill it before us.
	d.watchdog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = d.watchdog.Start()
	r.Close()
	if err != nil {
		w.Close()
		d.killGroup()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the watchdog shell: %w", err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		var status struct {
			Ready   bool   `json:"ready"`
			Message string `json:"message"`
		}
		err = d.do(http.MethodGet, "/status", nil, &status)
		if err == nil && status.Ready {
			return d, nil
		}
		if exited(pgid) {
			d.stop()
			return nil, fmt.Errorf("chromedriver exited at start: %s", d.logTail())
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("chromedriver not ready on %s within 20s (last: %v %q): %s", d.base, err, status.Message, d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited reports whether the child pid has exited, reaping it if so. It
// keeps no goroutine waiting on the child (see driver.client).
func exited(pid int) bool {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return got == pid || errors.Is(err, syscall.ECHILD)
}

func (d *driver) killGroup() {
	if d.pgid > 1 { // kill(-1) would signal every process we may signal
		_ = syscall.Kill(-d.pgid, syscall.SIGKILL)
	}
}

// stop ends chromedriver and everything in its process group, then lets
// the watchdog remove the temporary directory. Delete the sessions first:
// that closes the browsers cleanly. Only the first call acts.
func (d *driver) stop() {
	if d.stopped || d.pgid <= 1 {
		return
	}
	d.stopped = true
	pgid := d.pgid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); !exited(pgid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	// Whatever is left (the browser if its session was not deleted).
	d.killGroup()
	exited(pgid)
	_ = d.cmd.Process.Release()
	d.release.Close()
	_ = d.watchdog.Wait()
}

// logTail returns the end of chromedriver's log (which also holds the
// browser's stderr), for error messages.
func (d *driver) logTail() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "chromedriver log (end):\n" + string(b)
}

// do sends one WebDriver command. body is encoded as JSON (nil as {} for
// POST); the answer's "value" is decoded into out unless out is nil.
func (d *driver) do(method, path string, body, out any) error {
	var rd io.Reader
	if method == http.MethodPost {
		if body == nil {
			body = struct{}{}
		}
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("%s %s: HTTP %d, undecodable answer: %w", method, path, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(answer.Value, &e)
		return &WebDriverError{Status: resp.StatusCode, Code: e.Error, Message: strings.TrimSpace(e.Message)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(answer.Value, out)
}
