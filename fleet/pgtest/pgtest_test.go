package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// roundTrip creates a table, inserts a row and reads it back.
func roundTrip(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE hits (ip inet PRIMARY KEY, n bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO hits VALUES ($1, $2)", "198.18.1.7", int64(42)); err != nil {
		t.Fatal(err)
	}
	var ip string
	var n int64
	if err := conn.QueryRow(ctx, "SELECT host(ip), n FROM hits").Scan(&ip, &n); err != nil {
		t.Fatal(err)
	}
	if ip != "198.18.1.7" || n != 42 {
		t.Fatalf("read back (%s, %d), want (198.18.1.7, 42)", ip, n)
	}
}

func TestStart(t *testing.T) {
	var pid int
	var dataDir string
	t.Run("server", func(t *testing.T) {
		conn := connect(t, Start(t))
		roundTrip(t, conn)
		ctx := context.Background()
		if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
			t.Fatal(err)
		}
		// The postmaster's PID is the first line of postmaster.pid.
		b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if pid, err = strconv.Atoi(line); err != nil || pid <= 0 {
			t.Fatalf("postmaster.pid starts with %q", line)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("postmaster %d not running during the test: %v", pid, err)
		}
		if os.Geteuid() == 0 {
			// PostgreSQL refuses to run as root, so it runs as another user.
			fi, err := os.Stat(dataDir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Sys().(*syscall.Stat_t).Uid == 0 {
				t.Errorf("data directory %s owned by root", dataDir)
			}
		}
	})
	if pid == 0 {
		return // skipped or failed above
	}
	// Start's cleanup has run: the process must be gone (reaped, so not even
	// a zombie) and its directory removed.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d after cleanup: kill(0) = %v, want ESRCH", pid, err)
	}
	if _, err := os.Stat(filepath.Dir(dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server directory %s after cleanup: %v, want not exist", filepath.Dir(dataDir), err)
	}
}

func TestShared(t *testing.T) {
	ctx := context.Background()
	a, b := connect(t, Shared(t)), connect(t, Shared(t))
	var nameA, nameB string
	if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB); err != nil {
		t.Fatal(err)
	}
	if nameA == nameB {
		t.Fatalf("two Shared calls gave the same database %s", nameA)
	}
	roundTrip(t, a)
	// The table made in a's database must not exist in b's.
	var found *string
	if err := b.QueryRow(ctx, "SELECT to_regclass('hits')::text").Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found != nil {
		t.Fatalf("table hits of database %s visible in %s", nameA, nameB)
	}
	roundTrip(t, b)
	// Both on one server: same data directory.
	var dirA, dirB string
	if err := a.QueryRow(ctx, "SHOW data_directory").Scan(&dirA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SHOW data_directory").Scan(&dirB); err != nil {
		t.Fatal(err)
	}
	if dirA != dirB {
		t.Errorf("Shared databases on different servers: %s and %s", dirA, dirB)
	}
}

func TestFindBinDir(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string, names ...string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	lib := filepath.Join(root, "lib")
	mk(filepath.Join(lib, "9.6", "bin"), "initdb", "postgres")
	v15 := mk(filepath.Join(lib, "15", "bin"), "initdb", "postgres")
	mk(filepath.Join(lib, "17", "bin"), "initdb") // incomplete: no postgres
	empty := mk(filepath.Join(root, "empty"))

	if got, err := findBinDir(empty, lib); err != nil || got != v15 {
		t.Errorf("highest complete version: got %q, %v; want %q", got, err, v15)
	}
	// An installation in PATH wins, found through its initdb symlink.
	inst := mk(filepath.Join(root, "inst", "bin"), "initdb", "postgres")
	links := mk(filepath.Join(root, "links"))
	if err := os.Symlink(filepath.Join(inst, "initdb"), filepath.Join(links, "initdb")); err != nil {
		t.Fatal(err)
	}
	if got, err := findBinDir(empty+string(filepath.ListSeparator)+links, lib); err != nil || got != inst {
		t.Errorf("PATH symlink: got %q, %v; want %q", got, err, inst)
	}
	if _, err := findBinDir(empty, filepath.Join(root, "nothing")); !errors.Is(err, errMissing) {
		t.Errorf("no installation: err = %v, want errMissing", err)
	}
}
