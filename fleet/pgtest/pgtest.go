// Package pgtest starts a private PostgreSQL server for tests.
//
// The server is the real one (initdb and postgres from the machine's
// PostgreSQL installation), listening only on a Unix socket in a private
// temporary directory, with durability switched off for speed. Start gives a
// test its own server; Shared gives it its own database on one server per
// test binary, which needs the package's TestMain to call Main.
//
// When the server binaries are missing the test is skipped, or fails when
// CI=true (CI installs them, so a missing one there is a broken set-up).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the role initdb creates; the server trusts every local
// connection, so URLs carry no password.
const Superuser = "xffidx"

const (
	// startTimeout bounds initdb plus the wait for the first connection; a
	// loaded 2-core CI machine takes a few seconds.
	startTimeout = 60 * time.Second
	// stopTimeout is how long a SIGINT (fast shutdown) may take before the
	// server is killed.
	stopTimeout = 15 * time.Second
)

// errMissing marks a machine without the server binaries.
var errMissing = errors.New("PostgreSQL server binaries (initdb, postgres) not found")

// server is one running postmaster and the directory holding its data
// directory, socket and log.
type server struct {
	dir  string // removed by stop
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	log  string        // path of the server's stdout/stderr
}

// Start starts a private server for t and returns the URL of its postgres
// database; the server is stopped and its files removed when t ends.
func Start(t testing.TB) string {
	t.Helper()
	s, err := startServer()
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s.url("postgres")
}

// shared is the one server of Shared, started by the first call and stopped
// by Main. It is process-wide state on purpose: the point is to pay initdb
// and server start once per test binary, not once per test.
var shared struct {
	once    sync.Once
	srv     *server
	err     error
	mainRan atomic.Bool // Main is running, so it will stop the server
	nextDB  atomic.Int64
}

// Shared returns the URL of a new, empty database on the test binary's
// shared server, starting that server on first use. The package's TestMain
// must call Main, which stops the server after the tests.
func Shared(t testing.TB) string {
	t.Helper()
	if !shared.mainRan.Load() {
		t.Fatal("pgtest.Shared needs TestMain to run os.Exit(pgtest.Main(m)), which stops the shared server")
	}
	shared.once.Do(func() { shared.srv, shared.err = startServer() })
	if shared.err != nil {
		skipOrFail(t, shared.err)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), shared.nextDB.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, shared.srv.url("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connecting to the shared server: %v", err)
	}
	defer conn.Close(context.Background())
	// The name is built above from integers only, so it needs no quoting.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	return shared.srv.url(name)
}

// Main runs the tests and then stops the shared server, if Shared started
// one. Use it as `func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }`.
func Main(m *testing.M) int {
	shared.mainRan.Store(true)
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// skipOrFail ends the test for a server that could not start: a skip when
// the binaries are missing outside CI, a failure otherwise.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if errors.Is(err, errMissing) {
		t.Fatalf("CI=true, so not skipped: %v", err)
	}
	t.Fatal(err)
}

// url is the connection URL of database db over the server's socket.
func (s *server) url(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Path:     "/" + db,
		RawQuery: url.Values{"host": {s.dir}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// startServer creates a cluster in a new temporary directory and starts a
// postmaster on it, returning once the server accepts connections.
func startServer() (_ *server, err error) {
	bin, err := findBinDir(os.Getenv("PATH"), "/usr/lib/postgresql")
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	// The socket lives in this directory, so its path must stay under the
	// ~107-byte limit of a Unix socket address: os.MkdirTemp, not a
	// t.TempDir named after the test.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(dir, "data")

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = sysProcAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w\n%s", initdb, err, out)
	}

	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir,
		"-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	s := &server{dir: dir, cmd: cmd, done: make(chan struct{}), log: logPath}
	started := make(chan error)
	go func() {
		// Pdeathsig (see sysProcAttr) fires when the thread that started
		// the server exits, and Go ends a thread whose goroutine exits
		// while locked to it: pin this goroutine, which lives as long as
		// the server, to its thread so no other goroutine can end it.
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
		}
		logFile.Close()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w", cmd, err)
	}
	if err := s.waitReady(ctx); err != nil {
		if stopErr := s.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return s, nil
}

// waitReady polls the server with connection attempts until one succeeds,
// the server exits or ctx ends.
func (s *server) waitReady(ctx context.Context) error {
	var lastErr error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, s.url("postgres"))
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		select {
		case <-s.done:
			return fmt.Errorf("pgtest: postgres exited before accepting connections (%v); server log:\n%s",
				s.cmd.ProcessState, s.readLog())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres not accepting connections after %v (%v); server log:\n%s",
				startTimeout, lastErr, s.readLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down (SIGINT, a fast shutdown; SIGKILL if that takes
// longer than stopTimeout) and removes its directory.
func (s *server) stop() error {
	var errs []error
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		errs = append(errs, fmt.Errorf("pgtest: SIGINT to postgres (pid %d): %w", s.cmd.Process.Pid, err))
	}
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		errs = append(errs, fmt.Errorf("pgtest: postgres (pid %d) still running %v after SIGINT, killed; server log:\n%s",
			s.cmd.Process.Pid, stopTimeout, s.readLog()))
		if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("pgtest: SIGKILL to postgres (pid %d): %w", s.cmd.Process.Pid, err))
		}
		<-s.done
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: %w", err))
	}
	return errors.Join(errs...)
}

// readLog returns the server log for an error message.
func (s *server) readLog() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// serverCredential returns the unprivileged user to run the server as when
// this process is root (PostgreSQL refuses to run as root), nil otherwise:
// postgres if that account exists (Debian's package creates it), else nobody.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var lookupErrs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			lookupErrs = append(lookupErrs, err)
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("pgtest: user %s: uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("pgtest: user %s: gid %q: %w", name, u.Gid, err)
		}
		// Groups empty: drop root's supplementary groups too.
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, fmt.Errorf("pgtest: running as root and no unprivileged user to run postgres as: %w", errors.Join(lookupErrs...))
}

// findBinDir returns the directory holding both initdb and postgres: the
// one of the initdb found in path (symlinks resolved, so that postgres comes
// from the same installation), else the highest version under libRoot
// (Debian's /usr/lib/postgresql/VERSION/bin, which is not in PATH).
func findBinDir(path, libRoot string) (string, error) {
	var candidates []string
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !isExecutable(filepath.Join(dir, "initdb")) {
			continue
		}
		if real, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb")); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, dir)
		break
	}
	versions, _ := filepath.Glob(filepath.Join(libRoot, "*"))
	slices.SortFunc(versions, func(a, b string) int {
		return compareVersions(filepath.Base(b), filepath.Base(a)) // highest first
	})
	for _, v := range versions {
		candidates = append(candidates, filepath.Join(v, "bin"))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w in PATH or %s/*/bin", errMissing, libRoot)
}

// compareVersions orders PostgreSQL version directory names numerically
// ("9.6" < "15"); a part that is not a number sorts below any number.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		na, nb := -1, -1
		if i < len(pa) {
			if n, err := strconv.Atoi(pa[i]); err == nil {
				na = n
			}
		}
		if i < len(pb) {
			if n, err := strconv.Atoi(pb[i]); err == nil {
				nb = n
			}
		}
		if na != nb {
			return na - nb
		}
	}
	return strings.Compare(a, b)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
