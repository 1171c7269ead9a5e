package ingest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/compressed/compresstest"
	"github.com/xffidx/xffidx/index"

	"github.com/xffidx/xffidx/format/xff"
)

// answers is everything a query can see: every hit, by path and offset,
// and every catalog entry's totals.
func answers(t *testing.T, store *index.Store) []string {
	t.Helper()
	if !store.Exists() {
		return nil
	}
	hits, _, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range hits {
		out = append(out, fmt.Sprintf("hit %s %v %s@%d pos %d raw %q requests %+v conn %d %v", h.Addr, h.Header, h.File.Path, h.Offset, h.Pos, h.Raw, h.Requests, h.ConnStart, h.ConnSYN))
	}
	for _, f := range files {
		out = append(out, fmt.Sprintf("file %s size %d packets %d hits %d lines %d/%d (%d continued) requests %d addrs %d nonaddr %d skipped %d first %v last %v resume %d headers %b gaps %d dups %d early %d evicted %d",
			f.Path, f.Size, f.Packets, f.Hits, f.XFFLines, f.OtherLines, f.ContLines, f.Requests, f.Addresses, f.NonAddresses, f.SkippedBytes, f.FirstTS, f.LastTS, f.ResumeAt, f.Headers,
			f.Gaps, f.Dups, f.Early, f.Evicted))
	}
	slices.Sort(out)
	return out
}

// genCapture makes a capture whose header blocks often span several
// segments (big cookies), so that appends cut inside them: bulk traffic, or,
// for odd seeds, a busy link (interleaved connections, reordering,
// retransmissions, gaps).
func genCapture(t *testing.T, seed int64, size int64) []byte {
	var buf bytes.Buffer
	var err error
	if seed%2 == 1 {
		_, err = capgen.WriteBusy(&buf, capgen.BusyConfig{Seed: seed, TargetBytes: size, Conns: 200, NoTruth: true})
	} else {
		_, err = capgen.Write(&buf, capgen.Config{Seed: seed, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: size, XFFRate: 0.05, CookieRate: 0.3, NoTruth: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestIncrementalEqualsFresh is the property of incremental builds: after
// any sequence of grow / rename / delete / new file / corrupt file /
// overwrite and incremental builds with --prune, every answer equals that of
// a fresh full build of the same directory. Appends cut anywhere, inside
// records and inside header blocks spread over several segments: a grown
// file goes on from the connection state saved at its end.
func TestIncrementalEqualsFresh(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 77))
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "archive"), 0o755)
			store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
			inc := &Builder{Store: store, Opts: Options{Prune: true, Workers: 2, ChunkSize: 64 << 10}}
			// growing files: name -> full content and how much is written
			type growing struct {
				data    []byte
				written int
			}
			live := map[string]*growing{}
			next := 0
			newFile := func() {
				name := filepath.Join(dir, fmt.Sprintf("cap%02d.pcap", next))
				g := &growing{data: genCapture(t, int64(seed)*100+int64(next), 300<<10)}
				g.written = 24 + rng.IntN(len(g.data)-24)
				next++
				live[name] = g
				if err := os.WriteFile(name, g.data[:g.written], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pick := func() string {
				var names []string
				for n := range live {
					names = append(names, n)
				}
				if len(names) == 0 {
					return ""
				}
				slices.Sort(names)
				return names[rng.IntN(len(names))]
			}
			var log []string
			newFile()
			if _, err := inc.Build([]string{dir}, nil); err != nil {
				t.Fatal(err)
			}
			for step := range 14 {
				op := rng.IntN(8)
				name := pick()
				switch {
				case op == 0 || name == "":
					newFile()
					log = append(log, "new")
				case op <= 2: // grow
					g := live[name]
					if g.written < len(g.data) {
						from := g.written
						g.written += 1 + rng.IntN(len(g.data)-g.written)
						f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
						if err != nil {
							t.Fatal(err)
						}
						more := g.data[from:g.written]
						if strings.HasSuffix(name, ".gz") {
							// A compressed capture grows by a member.
							more = compresstest.GzipMembers(more, len(more), nil)
						}
						f.Write(more)
						f.Close()
					}
					log = append(log, "grow "+filepath.Base(name))
				case op == 3: // rotate: rename, maybe into the archive
					to := name + ".1"
					if rng.IntN(2) == 0 {
						to = filepath.Join(dir, "archive", filepath.Base(name))
					}
					if _, err := os.Stat(to); err == nil {
						continue
					}
					os.Rename(name, to)
					live[to] = live[name]
					delete(live, name)
					log = append(log, "rename "+filepath.Base(name))
				case op == 4:
					os.Remove(name)
					delete(live, name)
					log = append(log, "delete "+filepath.Base(name))
				case op == 5: // garbage spliced into a copy: a corrupt new file
					g := live[name]
					mid := 24 + rng.IntN(g.written-24)
					junk := make([]byte, 3000)
					for i := range junk {
						junk[i] = byte(rng.Uint32())
					}
					bad := append(append(append([]byte{}, g.data[:mid]...), junk...), g.data[mid:g.written]...)
					os.WriteFile(filepath.Join(dir, fmt.Sprintf("bad%02d.pcap", step)), bad, 0o644)
					log = append(log, "corrupt copy of "+filepath.Base(name))
				case op == 7: // logrotate: renamed, compressed, the original deleted
					if strings.HasSuffix(name, ".gz") {
						continue
					}
					g := live[name]
					to := name + ".1.gz"
					if _, err := os.Stat(to); err == nil {
						continue
					}
					os.Rename(name, name+".1")
					if err := os.WriteFile(to, compresstest.GzipMembers(g.data[:g.written], 1<<20, nil), 0o644); err != nil {
						t.Fatal(err)
					}
					os.Remove(name + ".1")
					live[to] = g
					delete(live, name)
					log = append(log, "compress "+filepath.Base(name))
				case op == 6: // overwritten with another capture: its start changes
					g := &growing{data: genCapture(t, int64(seed)*100+50+int64(step), 200<<10)}
					g.written = len(g.data)
					live[name] = g
					os.WriteFile(name, g.data, 0o644)
					log = append(log, "overwrite "+filepath.Base(name))
				}
				actions := map[Action]int{}
				if _, err := inc.Build([]string{dir}, func(r FileResult) { actions[r.Action]++ }); err != nil {
					t.Fatal(err)
				}
				// The build must have recognised what happened, not just
				// reached the same answers by reading everything again.
				expect := map[string]Action{"rename": ActionRenamed, "compress": ActionRenamed, "delete": ActionPruned, "overwrite": ActionChanged, "new": ActionNew}
				if a, ok := expect[strings.Fields(log[len(log)-1])[0]]; ok && actions[a] == 0 {
					t.Fatalf("after %v: no file %s (actions %v)", log, a, actions)
				}
				if last := strings.Fields(log[len(log)-1]); last[0] == "compress" {
					// Its hits were kept, and its restart points added.
					files, _ := store.Catalog()
					i := slices.IndexFunc(files, func(f index.FileInfo) bool { return filepath.Base(f.Path) == last[1]+".1.gz" })
					if i < 0 || files[i].Container != "gzip" {
						t.Fatalf("after %v: no gzip entry for the compressed capture", log)
					}
					if n, _, err := store.SeekPointCount(files[i].ID); err != nil || n == 0 {
						t.Fatalf("after %v: %d restart points (%v)", log, n, err)
					}
				}
				if actions[ActionNew]+actions[ActionChanged] > 2 {
					t.Fatalf("after %v: read %d files from scratch", log, actions[ActionNew]+actions[ActionChanged])
				}
				fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
				if _, err := (&Builder{Store: fresh, Opts: Options{Workers: 1}}).Build([]string{dir}, nil); err != nil {
					t.Fatal(err)
				}
				got, want := answers(t, store), answers(t, fresh)
				if !slices.Equal(got, want) {
					t.Fatalf("after %v:\nincremental has %d answers, fresh %d; first difference:\n%s", log, len(got), len(want), firstDiff(got, want))
				}
			}
			t.Logf("steps: %v", log)
		})
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf(" incremental: %s\n fresh:       %s", a[i], b[i])
		}
	}
	if len(a) > len(b) {
		return " incremental has more: " + a[len(b)]
	}
	if len(b) > len(a) {
		return " fresh has more: " + b[len(a)]
	}
	return ""
}
