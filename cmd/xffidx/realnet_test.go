// TestRealNet checks xffidx against a capture made by real software with
// real kernel segmentation, and against an oracle that reassembles every TCP
// stream of that capture on its own.
//
// Topology (four network namespaces joined by veth pairs, MTU 1500; TSO,
// GSO, GRO, LRO, checksum and scatter-gather offloads off on every
// interface, gso_max_segs 1 and tcp_min_tso_segs 1, so that the qdisc and
// the capture both see single MSS-sized segments):
//
//	clients ns          haproxy ns                    relay ns          backend ns
//	loadgen cli0 ──── hap0 haproxy hap1 ──────── rl0 relay rl1 ──── be0 nginx
//	198.18.1.1-200/24   198.18.1.254  198.18.2.1                        198.18.2.2
//	                                  HTB 100 Mbit/s  AF_PACKET bridge:   tcpdump -s 0
//	                                  64 classes,     ~2 % of data frames
//	                                  u32 on the      held back, ~0.5 %
//	                                  source port     sent twice
//
// loadgen (testdata/realnet/loadgen) runs 300 keep-alive clients, each
// connection bound to one of 200 source addresses, with 1-16 KB cookies on
// about half the requests (header blocks of 2-13 segments), POST bodies
// (Content-Length and chunked) full of header-like decoys and fake requests,
// and forwarding headers of their own (X-Forwarded-For, X-Real-IP,
// Forwarded, True-Client-IP, CF-Connecting-IP) on a quarter. haproxy (mode
// http, option forwardfor, http-reuse always) appends its own
// X-Forwarded-For line at the end of each header block. Its uplink is shaped
// to 100 Mbit/s by HTB with 64 classes served one frame at a time in turn
// (a u32 filter on the source port's low bits picks the class: per-flow round
// robin, since this kernel has no sfq, fq or fq_codel), so the segments of
// hundreds of connections interleave as on a busy link. relay
// (testdata/realnet/relay) bridges its namespace's two interfaces in user
// space and on the way to the backend holds back ~2 % of the TCP data frames
// until 1-3 later frames of their connection have passed (or 30 ms) and sends
// ~0.5 % twice. nginx answers at once a request with a Content-Length body
// (haproxy then often sends the next request in the segment that ends the
// body) and reads a chunked one whole first (see the nginx configuration for
// why). tcpdump captures on the backend's interface.
//
// The oracle (rnAnalyse, below) shares no code with xffidx: it reads the pcap
// itself, decodes frames with gopacket, orders each TCP stream's segments by
// sequence number (a byte carried by several records belongs to the first
// record in file order that carried it), parses HTTP/1.x requests (request
// line, header lines, body by chunked or Content-Length) and lists every
// (record offset, header, address) of the forwarding header lines, a line
// being attributed to the record that carries its first byte. A request with
// a hole (bytes never captured) is excluded and counted; one whose body the
// end of its stream cuts keeps its header lines.
//
// It is checked against tshark 4.0's own reassembly: per connection, the
// forwarding header lines (all five headers, name and value) of every
// request tshark dissects, and the count and set of X-Forwarded-For values
// and addresses it extracts, must be the oracle's. What tshark does, found
// here:
//   - Duplicates and retransmissions: with tcp.analyze_sequence_numbers on
//     (its default), a frame whose bytes were all seen before is marked
//     "TCP Retransmission" or "Spurious Retransmission" and HTTP is not
//     dissected in it again (tcp.no_subdissector_on_error on or off makes no
//     difference): a duplicated request counts once, at its first copy in
//     file order, as in the oracle. With sequence analysis off it loses
//     requests (4899 X-Forwarded-For lines of 5344 on one capture).
//   - Reordering: tcp.reassemble_out_of_order is off by default in 4.0, and
//     then tshark loses the request a late segment belongs to, often those
//     after it too (4831 of 5344); it is turned on here.
//   - Two bugs of its HTTP dissector: a chunked request that starts in the
//     segment that ends another chunked request gives "Malformed Packet"
//     and tshark loses the rest of the connection (nginx reads chunked
//     bodies first so that haproxy never sends one so); and a chunked
//     request whose very last byte (the LF of the final CRLF) is alone in
//     the next segment gives "Malformed Packet" and is lost. The second
//     cannot be avoided by real segmentation: such a connection (checked to
//     be exactly that case) is compared leniently (tshark's values must be a
//     part of the oracle's); any other disagreement fails.
//
// Then xffidx's hits (query --cidr 0.0.0.0/0 --cidr ::/0 --header all) are
// compared with the oracle's: counts, recall, precision, breakdowns by header,
// by the segment of its request a line starts in, and by records since the
// request's first segment, the first differences with what the oracle knows
// of them, and a few rows' 5-tuples against tshark's. Any difference fails.
//
// Run it alone (root, with haproxy, nginx, tcpdump, tshark, iproute2 and
// ethtool installed, as .ci/run installs them; about 30 s):
//
//	go test -run TestRealNet -v ./cmd/xffidx
//
// Without root, namespaces or one of those programs it is skipped, unless
// CI=true, where it fails instead. -short skips it too (not under CI=true).
//
//	REALNET_PCAP=FILE  analyse an existing capture (oracle, tshark, xffidx)
//	                   instead of making one: no root, haproxy or nginx needed
//	REALNET_SAVE=DIR   copy the capture to DIR with the oracle's expected
//	                   hits (expected.ndjson), xffidx's and a summary

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Addresses live only inside the test's namespaces (198.18.0.0/15, the
// benchmarking range); the values clients put in their own headers are
// documentation addresses that nothing is sent to.
const (
	rnClientFirst = "198.18.1.1" // 200 client source addresses from here
	rnClientCount = 200
	rnHaproxyIn   = "198.18.1.254"
	rnHaproxyOut  = "198.18.2.1"
	rnBackend     = "198.18.2.2"

	rnClients     = 300              // concurrent client connections
	rnRequests    = 4500             // requests in all
	rnLoadLimit   = 30 * time.Second // and at most this long
	rnRate        = "100mbit"        // haproxy's uplink
	rnFlowClasses = 64               // HTB classes, one per source-port hash
	rnReorder     = 0.02             // relay: fraction of data frames held back
	rnDup         = 0.005            // relay: fraction sent twice
	rnHoldPos     = 3                // held until 1..3 later frames of the flow passed
	rnHoldMax     = 30 * time.Millisecond
)

// rnHeaders are the forwarding headers, by xffidx's canonical names.
var rnHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP"}

// rnSkip skips the test, or fails it when CI=true: CI installs every piece,
// so a missing one there is a broken set-up, not a reason to pass.
func rnSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so not skipped: "+format, args...)
	}
	t.Skipf(format, args...)
}

func TestRealNet(t *testing.T) {
	began := time.Now()
	capPath := os.Getenv("REALNET_PCAP")
	var run *rnRun
	bin := t.TempDir()
	if capPath == "" {
		if testing.Short() && os.Getenv("CI") != "true" {
			t.Skip("-short: this test builds a network and captures real traffic")
		}
		tools := rnCheckTools(t)
		rnBuild(t, bin, ".", "./testdata/realnet/loadgen", "./testdata/realnet/relay")
		run = rnCapture(t, bin, tools)
		capPath = run.pcap
	} else {
		if _, err := exec.LookPath("tshark"); err != nil {
			rnSkip(t, "tshark not found: %v", err)
		}
		rnBuild(t, bin, ".")
	}
	if run != nil {
		t.Logf("capture: %s", run.summary())
	}

	t0 := time.Now()
	o, err := rnAnalyse(capPath)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	t.Logf("oracle (%.1f s): %s", time.Since(t0).Seconds(), o.summary())
	t.Logf("interleaving and depth: %s", o.interleaving())
	if run != nil && o.requests < run.load.OK {
		t.Errorf("the capture holds %d requests, fewer than the %d answered: it is incomplete", o.requests, run.load.OK)
	}

	t0 = time.Now()
	ts, err := rnTshark(capPath)
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	tsCmp := rnCompareTshark(o, ts)
	t.Logf("tshark (%.1f s): %s", time.Since(t0).Seconds(), tsCmp.summary)

	t0 = time.Now()
	hits, buildSummary, err := rnXffidx(bin, t.TempDir(), capPath)
	if err != nil {
		t.Fatalf("xffidx: %v", err)
	}
	cmp := rnCompare(o, hits)
	t.Logf("xffidx (%.1f s): %s", time.Since(t0).Seconds(), strings.TrimSpace(buildSummary))

	tuples := rnCheckTuples(capPath, o, hits)

	if dir := os.Getenv("REALNET_SAVE"); dir != "" {
		if err := rnSave(dir, capPath, o, run, tsCmp, cmp, hits); err != nil {
			t.Errorf("saving to %s: %v", dir, err)
		} else {
			t.Logf("saved the capture and the oracle's output to %s", dir)
		}
	}
	t.Logf("total time %.1f s", time.Since(began).Seconds())

	t.Run("oracle_vs_tshark", func(t *testing.T) {
		for _, l := range tsCmp.details {
			t.Log(l)
		}
		if !tsCmp.equal {
			t.Errorf("the oracle and tshark disagree: %s", tsCmp.summary)
		}
	})
	t.Run("five_tuples_vs_tshark", func(t *testing.T) {
		for _, l := range tuples.details {
			t.Log(l)
		}
		if tuples.err != "" {
			t.Error(tuples.err)
		}
	})
	t.Run("xffidx_vs_oracle", func(t *testing.T) {
		t.Log(cmp.summary)
		for _, l := range cmp.details {
			t.Log(l)
		}
		if !cmp.equal {
			t.Errorf("xffidx's (record, header, address) hits differ from the oracle's: %s", cmp.short)
		}
	})
}

// ---------------------------------------------------------------------------
// Tools, builds, processes.

type rnTools map[string]string

// rnCheckTools finds every program the capture needs, and checks that
// namespaces can be made; it skips (fails under CI=true) otherwise.
func rnCheckTools(t *testing.T) rnTools {
	t.Helper()
	tools := rnTools{}
	var missing []string
	for _, name := range []string{"ip", "tc", "ethtool", "haproxy", "nginx", "tcpdump", "tshark"} {
		p, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if _, e := os.Stat(filepath.Join(dir, name)); e == nil {
					p, err = filepath.Join(dir, name), nil
					break
				}
			}
		}
		if err != nil {
			missing = append(missing, name)
			continue
		}
		tools[name] = p
	}
	if len(missing) > 0 {
		rnSkip(t, "not installed: %s (.ci/run installs them)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		rnSkip(t, "needs root to create network namespaces (running as uid %d)", os.Geteuid())
	}
	name := fmt.Sprintf("xffrnprobe%d", os.Getpid())
	if out, err := exec.Command(tools["ip"], "netns", "add", name).CombinedOutput(); err != nil {
		rnSkip(t, "cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	exec.Command(tools["ip"], "netns", "del", name).Run()
	return tools
}

// rnBuild builds the packages into dir with the go command that runs the
// test (go test puts its GOROOT/bin first in PATH).
func rnBuild(t *testing.T, dir string, pkgs ...string) {
	t.Helper()
	t0 := time.Now()
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	t.Logf("built %v in %.1f s", pkgs, time.Since(t0).Seconds())
}

type rnProc struct {
	name    string
	cmd     *exec.Cmd
	out     string // stdout file
	errf    string // stderr file
	done    chan struct{}
	waitErr error
}

func (p *rnProc) stdout() string { b, _ := os.ReadFile(p.out); return string(b) }
func (p *rnProc) stderr() string { b, _ := os.ReadFile(p.errf); return string(b) }

func (p *rnProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop signals the process and waits for it, killing it (by its PID) if it
// does not end in time.
func (p *rnProc) stop(sig syscall.Signal, wait time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rnNet is the test's network: its namespaces and the processes started in
// them, all removed by cleanup.
type rnNet struct {
	t     *testing.T
	tools rnTools
	dir   string
	pfx   string
	nss   []string
	procs []*rnProc
}

func (n *rnNet) ns(s string) string { return n.pfx + s }

// cmd runs a command in namespace ns ("" for the test's own) and fails the
// test if it fails.
func (n *rnNet) cmd(ns string, args ...string) string {
	n.t.Helper()
	out, err := n.try(ns, args...)
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (n *rnNet) try(ns string, args ...string) (string, error) {
	var c *exec.Cmd
	if ns == "" {
		c = exec.Command(n.tools[args[0]], args[1:]...)
	} else {
		prog := args[0]
		if p, ok := n.tools[prog]; ok {
			prog = p
		}
		c = exec.Command(n.tools["ip"], append([]string{"netns", "exec", ns, prog}, args[1:]...)...)
	}
	out, err := c.CombinedOutput()
	return string(out), err
}

// start runs a program in a namespace in the background; `ip netns exec`
// execs it, so the PID is the program's.
func (n *rnNet) start(ns, name, prog string, args ...string) *rnProc {
	n.t.Helper()
	p := &rnProc{name: name, out: filepath.Join(n.dir, name+".out"), errf: filepath.Join(n.dir, name+".err"), done: make(chan struct{})}
	fo, err := os.Create(p.out)
	if err != nil {
		n.t.Fatal(err)
	}
	fe, err := os.Create(p.errf)
	if err != nil {
		n.t.Fatal(err)
	}
	p.cmd = exec.Command(n.tools["ip"], append([]string{"netns", "exec", ns, prog}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = fo, fe
	if err := p.cmd.Start(); err != nil {
		n.t.Fatalf("starting %s: %v", name, err)
	}
	n.procs = append(n.procs, p)
	go func() {
		p.waitErr = p.cmd.Wait()
		fo.Close()
		fe.Close()
		close(p.done)
	}()
	return p
}

// waitFor waits until the process's stdout or stderr holds s.
func (n *rnNet) waitFor(p *rnProc, s string, limit time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stderr(), s) || strings.Contains(p.stdout(), s) {
			return
		}
		if p.exited() {
			n.t.Fatalf("%s exited (%v): %s%s", p.name, p.waitErr, p.stdout(), p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("%s did not say %q within %v: %s%s", p.name, s, limit, p.stdout(), p.stderr())
}

// removeStale removes the namespaces of an earlier run of this test whose
// process is gone (killed by go test's timeout, which runs no cleanup).
func (n *rnNet) removeStale() {
	out, _ := exec.Command(n.tools["ip"], "netns", "list").Output()
	re := regexp.MustCompile(`^xffrn(\d+)[chrb]$`)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := re.FindStringSubmatch(f[0])
		if m == nil || m[1] == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue // that test may still be running
		}
		stale := &rnNet{t: n.t, tools: n.tools, nss: []string{f[0]}}
		stale.cleanup()
		n.t.Logf("removed the namespace %s of an earlier run", f[0])
	}
}

// cleanup ends every process the test started, by PID (anything still in
// one of its namespaces too), then deletes the namespaces.
func (n *rnNet) cleanup() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].stop(syscall.SIGTERM, 3*time.Second)
	}
	for _, ns := range n.nss {
		out, _ := exec.Command(n.tools["ip"], "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, ns := range n.nss {
		if out, err := exec.Command(n.tools["ip"], "netns", "del", ns).CombinedOutput(); err != nil {
			n.t.Logf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// ---------------------------------------------------------------------------
// Making the capture.

type rnLoadStats struct {
	Requests     int     `json:"requests_sent"`
	OK           int     `json:"responses_200"`
	Other        int     `json:"responses_other"`
	Errors       int     `json:"errors"`
	Conns        int     `json:"connections"`
	Gets         int     `json:"get"`
	PostCL       int     `json:"post_content_length"`
	PostChunked  int     `json:"post_chunked"`
	WithCookie   int     `json:"with_cookie"`
	CookieBytes  int64   `json:"cookie_bytes"`
	OwnHeaders   int     `json:"with_own_forwarding_headers"`
	BodyDecoys   int     `json:"body_decoy_lines"`
	FakeRequests int     `json:"bodies_with_a_fake_request"`
	RequestBytes int64   `json:"request_bytes"`
	Sources      int     `json:"source_addresses_used"`
	Seconds      float64 `json:"seconds"`
	FirstError   string  `json:"first_error"`
}

type rnRelayStats struct {
	AtoB        int64   `json:"frames_a_to_b"`
	BtoA        int64   `json:"frames_b_to_a"`
	DataAtoB    int64   `json:"tcp_data_frames_a_to_b"`
	Held        int64   `json:"held"`
	Overtaken   int64   `json:"held_released_after_overtaken"`
	HeldTimeout int64   `json:"held_released_by_timeout"`
	Duplicated  int64   `json:"duplicated"`
	SendErrors  int64   `json:"send_errors"`
	DropsA      int64   `json:"socket_drops_a"`
	DropsB      int64   `json:"socket_drops_b"`
	Seconds     float64 `json:"seconds"`
}

type rnRun struct {
	pcap      string
	size      int64
	load      rnLoadStats
	relay     rnRelayStats
	tcpdump   string // its closing counters
	qdisc     string // drops and overlimits of haproxy's uplink
	loadSecs  float64
	setupSecs float64
}

func (r *rnRun) summary() string {
	l, rl := r.load, r.relay
	frac := func(a, b int64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	firstErr := ""
	if l.FirstError != "" {
		firstErr = " (first: " + l.FirstError + ")"
	}
	return fmt.Sprintf("%.1f MB in %.1f s of load (set-up %.1f s); loadgen: %d requests, %d answered 200, %d other, %d errors%s, %d connections from %d source addresses; %d GET, %d POST with Content-Length, %d chunked; %d with a cookie (%.1f KB on average), %d with their own forwarding headers, %d decoy lines in bodies, %d bodies with a fake request; relay: %d data frames to the backend, %d held back (%.2f %%: %d overtaken by 1-%d later frames of their flow, %d released after %v), %d sent twice (%.2f %%), %d send errors, socket drops %d/%d; tcpdump: %s; uplink qdisc: %s",
		float64(r.size)/1e6, r.loadSecs, r.setupSecs, l.Requests, l.OK, l.Other, l.Errors, firstErr, l.Conns, l.Sources,
		l.Gets, l.PostCL, l.PostChunked, l.WithCookie, float64(l.CookieBytes)/float64(max(1, l.WithCookie))/1024, l.OwnHeaders, l.BodyDecoys, l.FakeRequests,
		rl.DataAtoB, rl.Held, frac(rl.Held, rl.DataAtoB), rl.Overtaken, rnHoldPos, rl.HeldTimeout, rnHoldMax, rl.Duplicated, frac(rl.Duplicated, rl.DataAtoB), rl.SendErrors, rl.DropsA, rl.DropsB,
		r.tcpdump, r.qdisc)
}

func rnCapture(t *testing.T, bin string, tools rnTools) *rnRun {
	t.Helper()
	t0 := time.Now()
	n := &rnNet{t: t, tools: tools, dir: t.TempDir(), pfx: fmt.Sprintf("xffrn%d", os.Getpid())}
	n.removeStale()
	t.Cleanup(n.cleanup)
	for _, s := range []string{"c", "h", "r", "b"} {
		n.cmd("", "ip", "netns", "add", n.ns(s))
		n.nss = append(n.nss, n.ns(s))
		n.cmd(n.ns(s), "ip", "link", "set", "lo", "up")
		// No IPv6 chatter (router solicitations, DAD) on the links.
		n.try(n.ns(s), "sh", "-c", "for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 > $f; done")
		// TCP always builds GSO packets (of at least tcp_min_tso_segs
		// segments) and leaves their segmentation to the device, after the
		// qdisc: the shaper would then move segments in pairs.
		n.cmd(n.ns(s), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_min_tso_segs")
	}
	n.cmd("", "ip", "link", "add", "cli0", "netns", n.ns("c"), "type", "veth", "peer", "name", "hap0", "netns", n.ns("h"))
	n.cmd("", "ip", "link", "add", "hap1", "netns", n.ns("h"), "type", "veth", "peer", "name", "rl0", "netns", n.ns("r"))
	n.cmd("", "ip", "link", "add", "rl1", "netns", n.ns("r"), "type", "veth", "peer", "name", "be0", "netns", n.ns("b"))
	ifaces := [][2]string{{"c", "cli0"}, {"h", "hap0"}, {"h", "hap1"}, {"r", "rl0"}, {"r", "rl1"}, {"b", "be0"}}
	features := []string{"tso", "gso", "gro", "lro", "tx", "rx", "sg", "rx-gro-list", "rx-udp-gro-forwarding"}
	for _, ifc := range ifaces {
		ns, dev := n.ns(ifc[0]), ifc[1]
		n.cmd(ns, "ip", "link", "set", dev, "mtu", "1500")
		// One segment per GSO packet as well (see tcp_min_tso_segs above).
		n.cmd(ns, "ip", "link", "set", dev, "gso_max_segs", "1")
		args := []string{"ethtool", "-K", dev}
		for _, f := range features {
			args = append(args, f, "off")
		}
		if _, err := n.try(ns, args...); err != nil {
			// An older ethtool may not know a feature: one at a time.
			for _, f := range features {
				n.try(ns, "ethtool", "-K", dev, f, "off")
			}
		}
		k := n.cmd(ns, "ethtool", "-k", dev)
		for _, f := range []string{"tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload", "large-receive-offload", "rx-gro-list"} {
			for _, line := range strings.Split(k, "\n") {
				if v, ok := strings.CutPrefix(line, f+": "); ok && !strings.HasPrefix(v, "off") {
					t.Fatalf("%s: %s is still %s", dev, f, v)
				}
			}
		}
		n.cmd(ns, "ip", "link", "set", dev, "up")
	}
	var batch strings.Builder
	a := netip.MustParseAddr(rnClientFirst)
	for i := 0; i < rnClientCount; i++ {
		fmt.Fprintf(&batch, "address add %s/24 dev cli0\n", a)
		a = a.Next()
	}
	n.cmd(n.ns("c"), "ip", "-batch", rnWrite(t, n.dir, "addr.batch", batch.String()))
	n.cmd(n.ns("h"), "ip", "addr", "add", rnHaproxyIn+"/24", "dev", "hap0")
	n.cmd(n.ns("h"), "ip", "addr", "add", rnHaproxyOut+"/24", "dev", "hap1")
	n.cmd(n.ns("b"), "ip", "addr", "add", rnBackend+"/24", "dev", "be0")

	// haproxy's uplink: HTB at 100 Mbit/s over 64 leaf classes. Each has a
	// token rate of 8 kbit/s (so it is nearly always borrowing, and none
	// jumps the queue with a burst of its own) and may borrow up to the whole
	// rate, with a quantum of one frame: the backlogged classes are served
	// one frame each in turn. A u32 filter puts each backend connection in
	// the class of its source port's low 6 bits (class 1:10 takes the rest).
	// sfq, fq and fq_codel would do per-flow round robin by themselves, but
	// this kernel has only htb, tbf and fifos.
	var tcb strings.Builder
	fmt.Fprintf(&tcb, "qdisc add dev hap1 root handle 1: htb default 10\n")
	fmt.Fprintf(&tcb, "class add dev hap1 parent 1: classid 1:1 htb rate %s ceil %s burst 15k cburst 15k quantum 1514\n", rnRate, rnRate)
	for i := 0; i < rnFlowClasses; i++ {
		fmt.Fprintf(&tcb, "class add dev hap1 parent 1:1 classid 1:%x htb rate 8kbit ceil %s burst 1514 cburst 1514 quantum 1514\n", 16+i, rnRate)
		fmt.Fprintf(&tcb, "qdisc add dev hap1 parent 1:%x handle %x: pfifo limit 2000\n", 16+i, 16+i)
		fmt.Fprintf(&tcb, "filter add dev hap1 parent 1: protocol ip prio 1 u32 match ip sport %d 0x%x flowid 1:%x\n", i, rnFlowClasses-1, 16+i)
	}
	n.cmd(n.ns("h"), "tc", "-batch", rnWrite(t, n.dir, "tc.batch", tcb.String()))

	ng := filepath.Join(n.dir, "nginx")
	if err := os.MkdirAll(ng, 0o755); err != nil {
		t.Fatal(err)
	}
	nginxConf := rnWrite(t, ng, "nginx.conf", strings.ReplaceAll(`daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log warn;
events { worker_connections 2048; }
http {
  access_log off;
  client_body_temp_path DIR/body;
  proxy_temp_path DIR/proxy;
  fastcgi_temp_path DIR/fastcgi;
  uwsgi_temp_path DIR/uwsgi;
  scgi_temp_path DIR/scgi;
  # Header blocks of 20 KB and more, one line (the cookie) up to 16 KB.
  client_header_buffer_size 4k;
  large_client_header_buffers 8 64k;
  client_max_body_size 16m;
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen `+rnBackend+`:80 backlog=4096;
    # The readiness probe's connection is closed, not left for reuse.
    location = /probe { keepalive_timeout 0; return 200 "probe\n"; }
    # A request with a Content-Length body is answered at once, before its
    # body is read, as a server that rejects or short-cuts a request does:
    # haproxy then sends the next request on that connection right behind
    # the body, often in the segment that ends it. A chunked request is
    # read whole first (proxy_request_buffering, nginx's default for a
    # reverse proxy) and passed to the upstream below: tshark 4.0 cannot
    # dissect a chunked request that begins in the segment ending another
    # chunked request (Malformed Packet, then it loses the stream), and
    # this keeps the tshark cross-check exact.
    location / {
      if ($http_transfer_encoding) { rewrite ^ /buffered last; }
      return 200 "ok\n";
    }
    location = /buffered {
      internal;
      proxy_pass http://127.0.0.1:8081;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:8081;
    location / { return 200 "ok\n"; }
  }
}
`, "DIR", ng))
	hapConf := rnWrite(t, n.dir, "haproxy.cfg", `global
  maxconn 1500
  # Header blocks up to ~20 KB must fit a buffer.
  tune.bufsize 65536
  tune.maxrewrite 8192
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 30s
  timeout http-keep-alive 60s
frontend fe
  bind `+rnHaproxyIn+`:80 backlog 4096
  default_backend be
backend be
  server nginx `+rnBackend+`:80
`)
	nginx := n.start(n.ns("b"), "nginx", tools["nginx"], "-p", ng, "-c", nginxConf, "-e", filepath.Join(ng, "error.log"))
	haproxy := n.start(n.ns("h"), "haproxy", tools["haproxy"], "-db", "-f", hapConf)
	relay := n.start(n.ns("r"), "relay", filepath.Join(bin, "relay"), "-a", "rl0", "-b", "rl1",
		"-reorder", fmt.Sprint(rnReorder), "-dup", fmt.Sprint(rnDup), "-positions", fmt.Sprint(rnHoldPos), "-hold-max", rnHoldMax.String(), "-seed", "1")
	n.waitFor(relay, "forwarding", 10*time.Second)
	pcap := filepath.Join(n.dir, "backend.pcap")
	// -Z root: Debian's tcpdump drops to user tcpdump, who could not write
	// into the test's directory. --immediate-mode: no frame left in a ring
	// block when it is stopped.
	tcpdump := n.start(n.ns("b"), "tcpdump", tools["tcpdump"], "-i", "be0", "-s", "0", "-B", "65536", "--immediate-mode", "-Z", "root", "-n", "-w", pcap)
	n.waitFor(tcpdump, "listening on", 10*time.Second)
	for _, p := range []*rnProc{nginx, haproxy} {
		if p.exited() {
			t.Fatalf("%s exited: %v: %s%s", p.name, p.waitErr, p.stdout(), p.stderr())
		}
	}
	// End to end through the relay, before the load.
	probe := n.start(n.ns("c"), "probe", filepath.Join(bin, "loadgen"), "-target", rnHaproxyIn+":80", "-src", rnClientFirst, "-probe", "15s")
	select {
	case <-probe.done:
	case <-time.After(20 * time.Second):
	}
	if !probe.exited() || probe.waitErr != nil {
		t.Fatalf("probe through haproxy, relay and nginx failed: %v: %s\nhaproxy: %s\nnginx: %s", probe.waitErr, probe.stderr(), haproxy.stderr(), nginx.stderr())
	}
	setup := time.Since(t0).Seconds()

	t1 := time.Now()
	load := n.start(n.ns("c"), "loadgen", filepath.Join(bin, "loadgen"), "-target", rnHaproxyIn+":80", "-src", rnClientFirst,
		"-nsrc", fmt.Sprint(rnClientCount), "-c", fmt.Sprint(rnClients), "-n", fmt.Sprint(rnRequests), "-dur", rnLoadLimit.String(), "-seed", "1")
	select {
	case <-load.done:
	case <-time.After(rnLoadLimit + 40*time.Second):
		t.Fatalf("loadgen did not finish: %s", load.stderr())
	}
	loadSecs := time.Since(t1).Seconds()
	var ls rnLoadStats
	if err := json.Unmarshal([]byte(strings.TrimSpace(load.stdout())), &ls); err != nil || load.waitErr != nil {
		t.Fatalf("loadgen: %v %v: %s%s", load.waitErr, err, load.stdout(), load.stderr())
	}
	// A few client errors would not make the capture less useful; a broken
	// set-up would.
	if ls.OK < rnRequests*9/10 {
		t.Fatalf("loadgen: only %d of %d requests answered 200, %d errors (first: %s)\nhaproxy: %s\nnginx: %s",
			ls.OK, rnRequests, ls.Errors, ls.FirstError, haproxy.stderr(), nginx.stderr())
	}
	time.Sleep(time.Second) // the last ACKs
	tcpdump.stop(syscall.SIGTERM, 10*time.Second)
	relay.stop(syscall.SIGTERM, 10*time.Second)
	var rs rnRelayStats
	if err := json.Unmarshal([]byte(strings.TrimSpace(relay.stdout())), &rs); err != nil {
		t.Fatalf("relay: %v: %s%s", err, relay.stdout(), relay.stderr())
	}
	var tdStats []string
	for _, line := range strings.Split(tcpdump.stderr(), "\n") {
		if strings.Contains(line, "packets") {
			tdStats = append(tdStats, strings.TrimSpace(line))
		}
	}
	if m := regexp.MustCompile(`(\d+) packets dropped by kernel`).FindStringSubmatch(tcpdump.stderr()); m == nil || m[1] != "0" {
		t.Errorf("tcpdump dropped frames (or did not say): %s", tcpdump.stderr())
	}
	// The root HTB's counters: the line after its own.
	qd := "?"
	if lines := strings.Split(n.cmd(n.ns("h"), "tc", "-s", "qdisc", "show", "dev", "hap1"), "\n"); len(lines) > 1 {
		qd = strings.Join(strings.Fields(lines[1]), " ")
	}
	fi, err := os.Stat(pcap)
	if err != nil {
		t.Fatal(err)
	}
	return &rnRun{pcap: pcap, size: fi.Size(), load: ls, relay: rs, tcpdump: strings.Join(tdStats, ", "), qdisc: qd,
		loadSecs: loadSecs, setupSecs: setup}
}

func rnWrite(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------
// The oracle: its own pcap reader, gopacket decoding, TCP reassembly and
// HTTP/1.x request parsing.

// rnRecord is one pcap record.
type rnRecord struct {
	off   int64  // file offset of the record header
	seq   uint32 // TCP sequence number
	flow  int32  // index in rnOracle.flows, -1 if not TCP
	rel   int64  // stream position of the payload's first byte
	plen  int32  // payload bytes carried
	owned int32  // of which this record is the first carrier
}

// rnLine is a forwarding header line of a request.
type rnLine struct {
	Header string   `json:"header"`
	Value  string   `json:"value"`
	Addrs  []string `json:"addrs"`
	Rec    int      `json:"-"`
	Seg    int      `json:"segment"`       // 1-based segment of the request, in stream order, holding the line's first byte
	Since  int      `json:"records_since"` // records from the request's first segment to that one (negative if before)
}

type rnRequest struct {
	flow      int
	n         int // index in its flow
	start     int64
	hdrEnd    int64 // position after the empty line
	end       int64
	firstRec  int
	segs      int
	method    string
	lines     []rnLine
	exclusion string // why its hits are not expected
	truncated bool   // the stream ends inside its body
	chunked   bool
}

type rnFlow struct {
	src, dst netip.AddrPort
	syn      bool
	isn      uint32
	base     uint32
	recs     []int // data records, file order
	reqs     []*rnRequest
	kind     string // "requests", "responses", "empty", or why it was not parsed
	lostTail string
}

func (f *rnFlow) key() string { return f.src.String() + " > " + f.dst.String() }

type rnHitInfo struct {
	req  *rnRequest
	line *rnLine
}

type rnHit struct {
	off    int64
	header string
	addr   string
}

type rnOracle struct {
	path    string
	size    int64
	recs    []rnRecord
	byOff   map[int64]int
	flows   []*rnFlow
	hits    map[rnHit]rnHitInfo
	ignored map[rnHit]bool // hits of excluded requests: neither expected nor wrong
	// For a record some of whose bytes an earlier record carried: those
	// records, in stream order.
	firstCarriers map[int][]int32
	requests      int // parsed, excluded ones included
	truncated     int // of which the stream ends inside the body
	excluded      map[string]int
	lines         map[string]int // forwarding header lines, by header (included requests)
	// Segment statistics of data records.
	dataRecs, dupRecs, aheadRecs, fillRecs, partialRecs int
	nonTCP                                              int
	flowsNoSyn                                          int
	unparsed                                            map[string]int
}

func rnAnalyse(path string) (*rnOracle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, errors.New("too short for a pcap")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("not a pcap file (the oracle reads pcap only)")
	}
	link := bo.Uint32(b[20:]) & 0x0fffffff
	var first gopacket.LayerType
	switch link {
	case 1:
		first = layers.LayerTypeEthernet
	case 113:
		first = layers.LayerTypeLinuxSLL
	case 101, 12:
		first = layers.LayerTypeIPv4 // raw IP; IPv6 would need a second parser
	default:
		return nil, fmt.Errorf("link type %d not handled by the oracle", link)
	}
	o := &rnOracle{path: path, size: int64(len(b)), byOff: map[int64]int{}, hits: map[rnHit]rnHitInfo{}, ignored: map[rnHit]bool{}, firstCarriers: map[int][]int32{},
		excluded: map[string]int{}, lines: map[string]int{}, unparsed: map[string]int{}}

	var eth layers.Ethernet
	var sll layers.LinuxSLL
	var vlan layers.Dot1Q
	var ip4 layers.IPv4
	var ip6 layers.IPv6
	var tcp layers.TCP
	var pl gopacket.Payload
	parser := gopacket.NewDecodingLayerParser(first, &eth, &sll, &vlan, &ip4, &ip6, &tcp, &pl)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 8)

	type fkey struct{ src, dst netip.AddrPort }
	current := map[fkey]int{}
	payloads := map[int][]byte{} // record index → TCP payload (a slice of b)
	for off := int64(24); off < int64(len(b)); {
		if off+16 > int64(len(b)) {
			return nil, fmt.Errorf("record header cut at offset %d", off)
		}
		incl := int64(bo.Uint32(b[off+8:]))
		if off+16+incl > int64(len(b)) {
			return nil, fmt.Errorf("record at offset %d cut short", off)
		}
		frame := b[off+16 : off+16+incl]
		ri := len(o.recs)
		o.recs = append(o.recs, rnRecord{off: off, flow: -1})
		o.byOff[off] = ri
		off += 16 + incl

		_ = parser.DecodeLayers(frame, &decoded)
		var src, dst netip.Addr
		var isTCP bool
		for _, lt := range decoded {
			switch lt {
			case layers.LayerTypeIPv4:
				src, _ = netip.AddrFromSlice(ip4.SrcIP)
				dst, _ = netip.AddrFromSlice(ip4.DstIP)
			case layers.LayerTypeIPv6:
				src, _ = netip.AddrFromSlice(ip6.SrcIP)
				dst, _ = netip.AddrFromSlice(ip6.DstIP)
			case layers.LayerTypeTCP:
				isTCP = src.IsValid()
			}
		}
		if !isTCP {
			o.nonTCP++
			continue
		}
		k := fkey{netip.AddrPortFrom(src.Unmap(), uint16(tcp.SrcPort)), netip.AddrPortFrom(dst.Unmap(), uint16(tcp.DstPort))}
		fi, ok := current[k]
		if tcp.SYN && !tcp.ACK && ok && o.flows[fi].syn && o.flows[fi].isn != tcp.Seq {
			ok = false // the 4-tuple used again by a new connection
		}
		if !ok {
			fi = len(o.flows)
			o.flows = append(o.flows, &rnFlow{src: k.src, dst: k.dst})
			current[k] = fi
		}
		f := o.flows[fi]
		o.recs[ri].flow = int32(fi)
		if tcp.SYN && !f.syn {
			f.syn, f.isn = true, tcp.Seq
		}
		if len(tcp.Payload) > 0 {
			f.recs = append(f.recs, ri)
			payloads[ri] = tcp.Payload
			o.recs[ri].plen = int32(len(tcp.Payload))
			o.recs[ri].seq = tcp.Seq
		}
	}
	for fi, f := range o.flows {
		o.assemble(fi, f, payloads)
	}
	return o, nil
}

// assemble builds the flow's byte stream and parses it.
func (o *rnOracle) assemble(fi int, f *rnFlow, payloads map[int][]byte) {
	if len(f.recs) == 0 {
		f.kind = "empty"
		return
	}
	if f.syn {
		f.base = f.isn + 1
	} else {
		o.flowsNoSyn++
		// Started before the capture: from the lowest sequence number seen.
		f.base = o.recs[f.recs[0]].seq
		for _, ri := range f.recs {
			if s := o.recs[ri].seq; int32(s-f.base) < 0 {
				f.base = s
			}
		}
	}
	var length int64
	for _, ri := range f.recs {
		rel := int64(int32(o.recs[ri].seq - f.base))
		o.recs[ri].rel = rel
		length = max(length, rel+int64(len(payloads[ri])))
	}
	data := make([]byte, length)
	owner := make([]int32, length)
	for i := range owner {
		owner[i] = -1
	}
	var highest int64
	for _, ri := range f.recs {
		p := payloads[ri]
		r := &o.recs[ri]
		o.dataRecs++
		start := r.rel
		var owned int32
		for i, c := range p {
			pos := start + int64(i)
			if pos < 0 {
				continue
			}
			if w := owner[pos]; w >= 0 {
				if fc := o.firstCarriers[ri]; len(fc) == 0 || fc[len(fc)-1] != w {
					o.firstCarriers[ri] = append(fc, w)
				}
				continue
			}
			owner[pos], data[pos] = int32(ri), c
			owned++
		}
		r.owned = owned
		end := start + int64(len(p))
		switch {
		case owned == 0:
			o.dupRecs++
		case start > highest:
			o.aheadRecs++
		case start < highest && end > highest && owned < int32(len(p)):
			o.partialRecs++
		case start < highest:
			o.fillRecs++
		}
		highest = max(highest, end)
	}
	o.parse(fi, f, data, owner)
}

// rnRequestLine parses "METHOD target HTTP/1.x".
func rnRequestLine(line []byte) (method string, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return "", false
	}
	for _, c := range line[:sp] {
		if c < 'A' || c > 'Z' {
			return "", false
		}
	}
	rest := line[sp+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 <= 0 || bytes.IndexByte(rest[:sp2], ' ') >= 0 {
		return "", false
	}
	v := rest[sp2+1:]
	if !bytes.Equal(v, []byte("HTTP/1.1")) && !bytes.Equal(v, []byte("HTTP/1.0")) {
		return "", false
	}
	return string(line[:sp]), true
}

func rnIndexLF(data []byte, from int64) int64 {
	i := bytes.IndexByte(data[from:], '\n')
	if i < 0 {
		return -1
	}
	return from + int64(i)
}

func rnTrimCR(b []byte) []byte { return bytes.TrimSuffix(b, []byte("\r")) }

// rnHeaderName returns the canonical name of a forwarding header, or "".
func rnHeaderName(name string) string {
	for _, h := range rnHeaders {
		if strings.EqualFold(name, h) {
			return h
		}
	}
	return ""
}

// rnChunkedEnd returns the position after a chunked body starting at p, -1
// if the data ends first, -2 if it is malformed.
func rnChunkedEnd(data []byte, p int64) int64 {
	n := int64(len(data))
	for {
		lf := rnIndexLF(data, min(p, n))
		if p >= n || lf < 0 {
			return -1
		}
		line := rnTrimCR(data[p:lf])
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(line)), 16, 64)
		if err != nil || size < 0 {
			return -2
		}
		p = lf + 1
		if size == 0 {
			// Trailer lines up to the empty line.
			for {
				if p >= n {
					return -1
				}
				lf := rnIndexLF(data, p)
				if lf < 0 {
					return -1
				}
				empty := len(rnTrimCR(data[p:lf])) == 0
				p = lf + 1
				if empty {
					return p
				}
			}
		}
		p += size
		switch {
		case p+2 <= n && data[p] == '\r' && data[p+1] == '\n':
			p += 2
		case p+1 <= n && data[p] == '\n':
			p++
		case p+2 > n:
			return -1
		default:
			return -2
		}
	}
}

// parse splits the flow's stream into HTTP/1.x requests and collects their
// forwarding header lines.
//
// A request with a hole (bytes never captured) is excluded: its hits are
// neither expected nor counted against xffidx (o.ignored), and so are those
// of a header block that the end of the stream cuts. A request whose header
// block is whole but whose body the end of the stream cuts (the client went
// away, or the capture stopped) is kept: its header lines are all there.
// After a hole in a header block or in chunked framing, where the next
// request starts is unknown: the rest of the flow is left (o.unparsed).
func (o *rnOracle) parse(fi int, f *rnFlow, data []byte, owner []int32) {
	n := int64(len(data))
	if bytes.HasPrefix(data, []byte("HTTP/")) {
		f.kind = "responses"
		return
	}
	hole := func(a, b int64) bool {
		for i := a; i < min(b, n); i++ {
			if owner[i] < 0 {
				return true
			}
		}
		return false
	}
	stop := func(why string) {
		f.lostTail = why
		o.unparsed[why]++
	}
	for pos := int64(0); pos < n; {
		if owner[pos] < 0 {
			stop("a hole where a request starts")
			return
		}
		req := &rnRequest{flow: fi, n: len(f.reqs), start: pos, firstRec: int(owner[pos]), end: n, hdrEnd: n}
		var starts []int64 // of req.lines
		exclude := func(why string) {
			req.exclusion = why
			f.reqs = append(f.reqs, req)
			o.requests++
			o.excluded[why]++
			o.ignore(req, starts, owner)
		}
		lf := rnIndexLF(data, pos)
		if lf < 0 {
			if len(f.reqs) == 0 {
				f.kind = "not HTTP/1.x requests"
				o.unparsed[f.kind]++
				return
			}
			exclude("request line cut by the end of the stream")
			return
		}
		method, ok := rnRequestLine(rnTrimCR(data[pos:lf]))
		if !ok {
			switch {
			case hole(pos, lf):
				stop("a hole in a request line")
			case len(f.reqs) == 0:
				f.kind = "not HTTP/1.x requests"
				o.unparsed[f.kind]++
			default:
				stop("not a request line where a request should start")
			}
			return
		}
		f.kind = "requests"
		req.method = method
		lastFwd := false // the last field line was a forwarding header
		cl, chunked, complete := int64(0), false, false
		p := lf + 1
		for p < n {
			lf := rnIndexLF(data, p)
			end := lf
			if lf < 0 {
				end = n // a last line cut by the end of the stream
			}
			line := rnTrimCR(data[p:end])
			if len(line) == 0 && lf < 0 {
				break
			}
			if len(line) == 0 {
				p, complete = lf+1, true
				break
			}
			if line[0] == ' ' || line[0] == '\t' {
				// obs-fold: the line continues the previous field.
				if lastFwd {
					l := &req.lines[len(req.lines)-1]
					l.Value += " " + strings.Trim(string(line), " \t")
				}
			} else {
				lastFwd = false
				if colon := bytes.IndexByte(line, ':'); colon > 0 {
					name := string(line[:colon])
					value := strings.Trim(string(line[colon+1:]), " \t")
					if h := rnHeaderName(name); h != "" {
						req.lines = append(req.lines, rnLine{Header: h, Value: value})
						starts = append(starts, p)
						lastFwd = true
					}
					switch strings.ToLower(name) {
					case "content-length":
						cl, _ = strconv.ParseInt(value, 10, 64)
					case "transfer-encoding":
						chunked = strings.Contains(strings.ToLower(value), "chunked")
					}
				}
			}
			if lf < 0 {
				break
			}
			p = lf + 1
		}
		if hole(pos, p) {
			stop("a hole in a header block")
			exclude("a hole in the header block (not captured)")
			return
		}
		if !complete {
			exclude("header block cut by the end of the stream")
			return
		}
		req.hdrEnd = p
		req.chunked = chunked
		end := p + cl
		if chunked {
			end = rnChunkedEnd(data, p)
			if end == -2 {
				if hole(p, n) {
					stop("a hole in a chunked body")
					exclude("a hole in the chunked body (not captured)")
				} else {
					stop("malformed chunked body")
				}
				return
			}
		}
		if end < 0 || end > n {
			// The stream ends inside the body.
			if hole(p, n) {
				exclude("a hole in the body (not captured)")
				return
			}
			req.truncated = true
			o.truncated++
			o.finish(req, starts, owner)
			f.reqs = append(f.reqs, req)
			o.requests++
			return
		}
		req.end = end
		if hole(p, end) {
			if chunked {
				stop("a hole in a chunked body")
				exclude("a hole in the chunked body (not captured)")
				return
			}
			exclude("a hole in the body (not captured)")
			pos = end
			continue
		}
		o.finish(req, starts, owner)
		f.reqs = append(f.reqs, req)
		o.requests++
		pos = end
	}
}

// ignore records the hits of an excluded request's lines whose first byte
// was captured: xffidx may or may not report them.
func (o *rnOracle) ignore(req *rnRequest, starts []int64, owner []int32) {
	for i, p := range starts {
		if owner[p] < 0 {
			continue
		}
		l := &req.lines[i]
		l.Rec = int(owner[p])
		for _, a := range rnElements(l.Header, l.Value) {
			o.ignored[rnHit{off: o.recs[l.Rec].off, header: l.Header, addr: a}] = true
		}
	}
}

// finish attributes each forwarding line of a fully captured request to the
// record carrying its first byte, and records the hits.
func (o *rnOracle) finish(req *rnRequest, starts []int64, owner []int32) {
	seg, prev := 0, int32(-1)
	li := 0
	for i := req.start; i < req.end; i++ {
		if owner[i] != prev {
			seg++
			prev = owner[i]
		}
		for li < len(starts) && starts[li] == i {
			l := &req.lines[li]
			l.Rec, l.Seg, l.Since = int(owner[i]), seg, int(owner[i])-req.firstRec
			li++
		}
	}
	req.segs = seg
	for i := range req.lines {
		l := &req.lines[i]
		l.Addrs = rnElements(l.Header, l.Value)
		o.lines[l.Header]++
		for _, a := range l.Addrs {
			k := rnHit{off: o.recs[l.Rec].off, header: l.Header, addr: a}
			if _, dup := o.hits[k]; !dup {
				o.hits[k] = rnHitInfo{req: req, line: l}
			}
		}
	}
}

// rnElements returns the addresses of a header value, canonical (IPv4-mapped
// IPv6 as IPv4), without ports, brackets or quotes.
func rnElements(header, value string) []string {
	var out []string
	if header == "Forwarded" {
		for _, el := range rnSplitQuoted(value, ',') {
			for _, pair := range rnSplitQuoted(el, ';') {
				name, v, ok := strings.Cut(pair, "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
					continue
				}
				v = strings.TrimSpace(v)
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					var u strings.Builder
					for i := 1; i < len(v)-1; i++ {
						if v[i] == '\\' && i+1 < len(v)-1 {
							i++
						}
						u.WriteByte(v[i])
					}
					v = u.String()
				}
				if i := strings.LastIndex(v, ":_"); i >= 0 {
					v = v[:i] // obfuscated port
				}
				if a, ok := rnNode(v); ok {
					out = append(out, a.String())
				}
				break // the first for= of the element
			}
		}
		return out
	}
	for _, el := range strings.Split(value, ",") {
		if a, ok := rnNode(el); ok {
			out = append(out, a.String())
		}
	}
	return out
}

func rnSplitQuoted(s string, sep byte) []string {
	var out []string
	inQ, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case esc:
			esc = false
		case inQ && c == '\\':
			esc = true
		case c == '"':
			inQ = !inQ
		case !inQ && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func rnIsPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// rnNode parses one list element: an IPv4 or IPv6 address, bracketed or not,
// with or without a port.
func rnNode(s string) (netip.Addr, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := s[end+1:]; rest != "" && !(rest[0] == ':' && rnIsPort(rest[1:])) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		return a.WithZone("").Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}
	if i := strings.IndexByte(s, ':'); i > 0 && strings.Count(s, ":") == 1 && rnIsPort(s[i+1:]) {
		if a, err := netip.ParseAddr(s[:i]); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (o *rnOracle) hitsByHeader() map[string]int {
	m := map[string]int{}
	for k := range o.hits {
		m[k.header]++
	}
	return m
}

func rnCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (o *rnOracle) summary() string {
	kinds := map[string]int{}
	for _, f := range o.flows {
		kinds[f.kind]++
	}
	return fmt.Sprintf("%d records (%d not TCP), %d TCP flows (%s; %d without a SYN), %d requests (%d whose body the end of the stream cuts, kept), %d excluded (%s), unparsed stream tails: %s; "+
		"forwarding header lines: %s; expected hits (record, header, address): %d (%s), %d more of excluded requests ignored; "+
		"data records: %d, of which %d arrived ahead of a gap (a segment before them held back), %d filled a gap late (reordered), %d partly new, %d carried only bytes already seen (duplicates, retransmissions)",
		len(o.recs), o.nonTCP, len(o.flows), rnCounts(kinds), o.flowsNoSyn, o.requests, o.truncated, rnSum(o.excluded), rnCounts(o.excluded), rnCounts(o.unparsed),
		rnCounts(o.lines), len(o.hits), rnCounts(o.hitsByHeader()), len(o.ignored),
		o.dataRecs, o.aheadRecs, o.fillRecs, o.partialRecs, o.dupRecs)
}

func rnSum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func rnPercentile(v []int, p float64) int {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(math.Round(p*float64(len(s)-1)))]
}

// interleaving reports, for the X-Forwarded-For line haproxy appended (the
// last of each request), how many records lie between the request's first
// segment and that line's segment, and in which segment of the request the
// line starts.
func (o *rnOracle) interleaving() string {
	var since, sinceDeep, segs, reqSegs, gaps []int
	depth := map[int]int{}
	var all, notFirst, far int
	for _, f := range o.flows {
		if f.kind != "requests" {
			continue
		}
		for i := 1; i < len(f.recs); i++ {
			gaps = append(gaps, f.recs[i]-f.recs[i-1]-1)
		}
		for _, r := range f.reqs {
			if r.exclusion != "" {
				continue
			}
			reqSegs = append(reqSegs, r.segs)
			var last *rnLine
			for i := range r.lines {
				l := &r.lines[i]
				if l.Header != "X-Forwarded-For" {
					continue
				}
				last = l
				all++
				depth[min(l.Seg, 13)]++
				if l.Seg > 1 {
					notFirst++
				}
				if l.Since >= 64 || l.Since < 0 {
					far++
				}
			}
			if last != nil {
				since = append(since, last.Since)
				segs = append(segs, last.Seg)
				if last.Seg > 1 {
					sinceDeep = append(sinceDeep, last.Since)
				}
			}
		}
	}
	var hist []string
	for d := 1; d <= 13; d++ {
		if depth[d] > 0 {
			label := strconv.Itoa(d)
			if d == 13 {
				label = "13+"
			}
			hist = append(hist, fmt.Sprintf("%s:%d", label, depth[d]))
		}
	}
	return fmt.Sprintf("records between two consecutive data segments of one request-carrying connection: median %d, p90 %d, max %d; "+
		"haproxy's X-Forwarded-For line (the last one) of %d requests: records between the request's first segment and that line's segment: median %d, p10 %d, p90 %d, max %d (for the %d requests where it is not in the first segment: median %d, p10 %d, p90 %d); "+
		"segment of the request holding it: median %d, p90 %d, max %d; segments per request: median %d, p90 %d, max %d; all %d X-Forwarded-For lines by segment of their request: %s (%d not in the first segment, %d ≥ 64 records after the request's first segment or before it)",
		rnPercentile(gaps, .5), rnPercentile(gaps, .9), rnPercentile(gaps, 1),
		len(since), rnPercentile(since, .5), rnPercentile(since, .1), rnPercentile(since, .9), rnPercentile(since, 1),
		len(sinceDeep), rnPercentile(sinceDeep, .5), rnPercentile(sinceDeep, .1), rnPercentile(sinceDeep, .9),
		rnPercentile(segs, .5), rnPercentile(segs, .9), rnPercentile(segs, 1),
		rnPercentile(reqSegs, .5), rnPercentile(reqSegs, .9), rnPercentile(reqSegs, 1),
		all, strings.Join(hist, " "), notFirst, far)
}

// describe says what the oracle knows of the record at offset off.
func (o *rnOracle) describe(off int64) string {
	ri, ok := o.byOff[off]
	if !ok {
		return "no record starts at this offset"
	}
	r := o.recs[ri]
	if r.flow < 0 {
		return fmt.Sprintf("frame %d: not TCP", ri+1)
	}
	f := o.flows[r.flow]
	s := fmt.Sprintf("frame %d, flow %s, stream bytes [%d,%d) of which it first carried %d", ri+1, f.key(), r.rel, r.rel+int64(r.plen), r.owned)
	if firsts := o.firstCarriers[ri]; len(firsts) > 0 {
		var fr []string
		for _, x := range firsts {
			fr = append(fr, strconv.Itoa(int(x)+1))
		}
		s += " (the others first in frame " + strings.Join(fr, ", ") + ")"
	}
	for _, q := range f.reqs {
		if q.end <= r.rel || q.start >= r.rel+int64(r.plen) {
			continue
		}
		part := "header block"
		switch {
		case r.rel >= q.hdrEnd:
			part = "body"
		case r.rel+int64(r.plen) > q.hdrEnd:
			part = "end of the header block and body"
		}
		s += fmt.Sprintf("; %s of request #%d (%s, bytes [%d,%d), header block ends at %d)", part, q.n, q.method, q.start, q.end, q.hdrEnd)
		if q.exclusion != "" {
			s += " excluded: " + q.exclusion
		}
	}
	return s
}

// ---------------------------------------------------------------------------
// tshark's view.

// rnTsharkArgs are the reassembly settings for tshark. Out-of-order
// reassembly is off by default in tshark 4.0; without it a request whose
// segments arrive out of order is not reassembled (see rnCompareTshark).
var rnTsharkArgs = []string{"-n",
	"-o", "tcp.desegment_tcp_streams:TRUE",
	"-o", "http.desegment_headers:TRUE",
	"-o", "http.desegment_body:TRUE",
	"-o", "tcp.reassemble_out_of_order:TRUE",
}

type rnTsRow struct {
	frame     int
	src, dst  string // ip:port
	xff       []string
	fwd       []string // the forwarding header lines, "Header: value" (canonical name)
	requests  int      // requests dissected in the frame
	malformed bool     // tshark's HTTP dissector raised an exception in it
}

// rnTshark lists the HTTP requests tshark finds, with their
// X-Forwarded-For values (one per line) and all their forwarding header
// lines, and the frames where its HTTP dissector failed (Malformed Packet).
func rnTshark(path string) ([]rnTsRow, error) {
	const agg = "\x1f" // separates the occurrences of a field
	args := append([]string{"-r", path}, rnTsharkArgs...)
	args = append(args, "-Y", "http.request || _ws.malformed", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator="+agg,
		"-e", "frame.number", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
		"-e", "http.x_forwarded_for", "-e", "http.request.method", "-e", "_ws.malformed", "-e", "http.request.line")
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var rows []rnTsRow
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	first := func(s string) string { v, _, _ := strings.Cut(s, agg); return v }
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 9 {
			return nil, fmt.Errorf("tshark line %q", rnCut(sc.Text(), 200))
		}
		fr, _ := strconv.Atoi(f[0])
		// A frame with several requests lists each address field once per
		// request; they are all the same connection.
		r := rnTsRow{frame: fr, src: rnJoinHostPort(first(f[1]), first(f[2])), dst: rnJoinHostPort(first(f[3]), first(f[4])),
			malformed: f[7] != ""}
		if f[6] != "" {
			r.requests = len(strings.Split(f[6], agg))
		}
		if f[5] != "" {
			for _, v := range strings.Split(f[5], agg) {
				r.xff = append(r.xff, strings.TrimSpace(v))
			}
		}
		if f[8] != "" {
			for _, line := range strings.Split(f[8], agg) {
				// tshark shows the line with its CRLF escaped.
				line = strings.TrimSuffix(line, `\r\n`)
				name, value, ok := strings.Cut(line, ":")
				if h := rnHeaderName(name); ok && h != "" {
					r.fwd = append(r.fwd, h+": "+strings.Trim(value, " \t"))
				}
			}
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

func rnJoinHostPort(h, p string) string {
	a, err := netip.ParseAddr(h)
	if err != nil {
		return h + ":" + p
	}
	port, _ := strconv.Atoi(p)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)).String()
}

type rnTsCompare struct {
	equal   bool
	summary string
	details []string
	// The counts, for the saved summary.
	OracleLines, TsharkLines, OracleRequests, TsharkRequests, OracleAddrs, TsharkAddrs, FlowsDiffering int
	OracleFwd, TsharkFwd                                                                               map[string]int
	BugFlows, BugLinesMissed, UnexplainedMalformed                                                     int
}

// tsharkBug tells whether tshark's Malformed Packet in record ri is the
// known failure of tshark 4.0's HTTP dissector on a chunked request whose
// last byte (the LF of the final CRLF) is in a later segment than the rest
// of the request: the record must end one byte before a chunked request does.
func (o *rnOracle) tsharkBug(ri int) bool {
	r := o.recs[ri]
	if r.flow < 0 {
		return false
	}
	for _, q := range o.flows[r.flow].reqs {
		if q.chunked && q.end == r.rel+int64(r.plen)+1 {
			return true
		}
	}
	return false
}

// rnCompareTshark compares, per connection, the forwarding header lines
// (all five headers, name and value) of the requests the oracle parsed with
// those tshark shows, and the X-Forwarded-For values tshark extracts (count
// and set of addresses). On a connection where tshark's HTTP dissector
// failed in the known way (tsharkBug) tshark loses that request, and
// sometimes those after it: there tshark's lines must be a part of the
// oracle's. Any other disagreement, or a Malformed Packet of another kind,
// fails the cross-check.
func rnCompareTshark(o *rnOracle, rows []rnTsRow) *rnTsCompare {
	c := &rnTsCompare{OracleFwd: map[string]int{}, TsharkFwd: map[string]int{}}
	want := map[string][]string{}
	wantAddr, gotAddr := map[string]bool{}, map[string]bool{}
	for _, f := range o.flows {
		for _, r := range f.reqs {
			if r.exclusion != "" || r.truncated {
				continue // tshark shows no request it cannot reassemble whole
			}
			c.OracleRequests++
			for _, l := range r.lines {
				want[f.key()] = append(want[f.key()], l.Header+": "+l.Value)
				c.OracleFwd[l.Header]++
				if l.Header == "X-Forwarded-For" {
					c.OracleLines++
					for _, a := range l.Addrs {
						wantAddr[a] = true
					}
				}
			}
		}
	}
	got := map[string][]string{}
	bug := map[string][]int{} // connection → frames where tshark failed
	for _, r := range rows {
		c.TsharkRequests += r.requests
		k := r.src + " > " + r.dst
		if r.malformed {
			if r.frame >= 1 && r.frame <= len(o.recs) && o.tsharkBug(r.frame-1) {
				bug[k] = append(bug[k], r.frame)
			} else {
				c.UnexplainedMalformed++
				c.details = append(c.details, fmt.Sprintf("tshark: Malformed Packet in frame %d (%s), not the known chunked-CRLF failure; the oracle: %s",
					r.frame, k, o.describe(o.recs[max(0, min(r.frame-1, len(o.recs)-1))].off)))
			}
		}
		for _, l := range r.fwd {
			got[k] = append(got[k], l)
			h, _, _ := strings.Cut(l, ":")
			c.TsharkFwd[h]++
		}
		for _, v := range r.xff {
			c.TsharkLines++
			for _, a := range rnElements("X-Forwarded-For", v) {
				gotAddr[a] = true
			}
		}
	}
	c.OracleAddrs, c.TsharkAddrs = len(wantAddr), len(gotAddr)
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	lostAddr := map[string]bool{} // X-Forwarded-For addresses of lines tshark lost to its failure
	lostXFF := 0
	for _, k := range keys {
		w, g := slices.Clone(want[k]), slices.Clone(got[k])
		slices.Sort(w)
		slices.Sort(g)
		if slices.Equal(w, g) {
			continue
		}
		onlyW, onlyG := rnMinus(w, g, len(w)), rnMinus(g, w, len(g))
		if frames, ok := bug[k]; ok && len(onlyG) == 0 {
			c.BugFlows++
			c.BugLinesMissed += len(onlyW)
			for _, l := range onlyW {
				if v, ok := strings.CutPrefix(l, "X-Forwarded-For: "); ok {
					lostXFF++
					for _, a := range rnElements("X-Forwarded-For", v) {
						lostAddr[a] = true
					}
				}
			}
			c.details = append(c.details, fmt.Sprintf("flow %s: tshark failed on a chunked request whose final LF is in the next segment (Malformed Packet in frame %v) and lost %d of the oracle's %d forwarding header lines there: %q",
				k, frames, len(onlyW), len(w), rnCut(strings.Join(onlyW, " | "), 200)))
			continue
		}
		c.FlowsDiffering++
		if c.FlowsDiffering <= 8 {
			c.details = append(c.details, fmt.Sprintf("flow %s: oracle %d forwarding header lines, tshark %d; only in the oracle: %q; only in tshark: %q",
				k, len(w), len(g), rnCut(strings.Join(onlyW, " | "), 200), rnCut(strings.Join(onlyG, " | "), 200)))
		}
	}
	addrsOK := true
	for a := range gotAddr {
		if !wantAddr[a] {
			addrsOK = false
		}
	}
	for a := range wantAddr {
		if !gotAddr[a] && !lostAddr[a] {
			addrsOK = false
		}
	}
	c.equal = c.FlowsDiffering == 0 && c.UnexplainedMalformed == 0 && addrsOK && c.OracleLines == c.TsharkLines+lostXFF
	var perHeader []string
	for _, h := range rnHeaders {
		perHeader = append(perHeader, fmt.Sprintf("%s %d/%d", h, c.OracleFwd[h], c.TsharkFwd[h]))
	}
	c.summary = fmt.Sprintf("X-Forwarded-For lines in requests: oracle %d, tshark %d; forwarding header lines (oracle/tshark): %s; requests: oracle %d (those whose body is whole), tshark %d; distinct X-Forwarded-For addresses: oracle %d, tshark %d (the same but for lines tshark lost: %v); connections whose forwarding header lines differ: %d, and %d more where tshark's HTTP dissector failed on a chunked request's final CRLF split across segments (%d lines lost there); other Malformed Packets: %d",
		c.OracleLines, c.TsharkLines, strings.Join(perHeader, ", "), c.OracleRequests, c.TsharkRequests, c.OracleAddrs, c.TsharkAddrs, addrsOK, c.FlowsDiffering, c.BugFlows, c.BugLinesMissed, c.UnexplainedMalformed)
	return c
}

// rnMinus returns up to n elements of the multiset a that are not in b.
func rnMinus(a, b []string, n int) []string {
	left := map[string]int{}
	for _, v := range b {
		left[v]++
	}
	var out []string
	for _, v := range a {
		if left[v] > 0 {
			left[v]--
			continue
		}
		if len(out) < n {
			out = append(out, v)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// xffidx's view.

type rnXRow struct {
	XFFIP   string `json:"xff_ip"`
	XFF     string `json:"xff"`
	Offset  int64  `json:"offset"`
	SrcIP   string `json:"src_ip"`
	SrcPort int    `json:"src_port"`
	DstIP   string `json:"dst_ip"`
	DstPort int    `json:"dst_port"`
	Header  string `json:"header"`
}

// rnXffidx builds an index of the capture with the xffidx binary and lists
// every hit of every header.
func rnXffidx(bin, ix, capPath string) ([]rnXRow, string, error) {
	x := filepath.Join(bin, "xffidx")
	var stderr bytes.Buffer
	build := exec.Command(x, "--index", ix, "build", capPath)
	build.Stderr = &stderr
	if err := build.Run(); err != nil {
		return nil, stderr.String(), fmt.Errorf("build: %v: %s", err, stderr.String())
	}
	summary := stderr.String()
	stderr.Reset()
	q := exec.Command(x, "--index", ix, "query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--header", "all", "--format", "json")
	q.Stderr = &stderr
	out, err := q.Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 { // 1: no hit
			return nil, summary, fmt.Errorf("query: %v: %s", err, stderr.String())
		}
	}
	var rows []rnXRow
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r rnXRow
		if err := dec.Decode(&r); err != nil {
			return nil, summary, fmt.Errorf("query output: %v", err)
		}
		rows = append(rows, r)
	}
	return rows, summary, nil
}

type rnCmp struct {
	equal    bool
	short    string
	summary  string
	details  []string
	Expected int `json:"expected"`
	Found    int `json:"found"`
	Matching int `json:"matching"`
	Missing  int `json:"missing"`
	Extra    int `json:"extra"`
	DupRows  int `json:"duplicate_rows"`
	Ignored  int `json:"ignored_rows_of_excluded_requests"`
	// Extras on records all (or some) of whose bytes an earlier record
	// carried: duplicates and retransmissions.
	ExtraOnCopies     int     `json:"extra_on_copies"`
	ExtraOnPartCopies int     `json:"extra_on_partial_copies"`
	Recall            float64 `json:"recall"`
	Precision         float64 `json:"precision"`
	XFFExpected       int     `json:"xff_expected"`
	XFFMatching       int     `json:"xff_matching"`
	XFFFound          int     `json:"xff_found"`
	XFFRecall         float64 `json:"xff_recall"`
	XFFPrecision      float64 `json:"xff_precision"`
}

func rnRatio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// rnCompare compares xffidx's (record, header, address) hits with the
// oracle's.
func rnCompare(o *rnOracle, rows []rnXRow) *rnCmp {
	c := &rnCmp{Expected: len(o.hits)}
	got := map[rnHit]bool{}
	for _, r := range rows {
		a, err := netip.ParseAddr(r.XFFIP)
		addr := r.XFFIP
		if err == nil {
			addr = a.WithZone("").Unmap().String()
		}
		k := rnHit{off: r.Offset, header: r.Header, addr: addr}
		if got[k] {
			c.DupRows++
		}
		got[k] = true
	}

	var missing, extra []rnHit
	byHeader := map[string][3]int{} // expected, found, matching
	bySeg := map[string][2]int{}    // expected, matching
	bySince := map[string][2]int{}
	for k, info := range o.hits {
		h := byHeader[k.header]
		h[0]++
		seg := strconv.Itoa(min(info.line.Seg, 4))
		if info.line.Seg >= 4 {
			seg = "4+"
		}
		since := "0"
		switch s := info.line.Since; {
		case s < 0:
			since = "<0"
		case s >= 64:
			since = "≥64"
		case s > 0:
			since = "1-63"
		}
		sg, sn := bySeg[seg], bySince[since]
		sg[0]++
		sn[0]++
		if got[k] {
			c.Matching++
			h[2]++
			sg[1]++
			sn[1]++
		} else {
			missing = append(missing, k)
		}
		byHeader[k.header], bySeg[seg], bySince[since] = h, sg, sn
	}
	for k := range got {
		_, expected := o.hits[k]
		if !expected && o.ignored[k] {
			c.Ignored++ // neither right nor wrong
			continue
		}
		h := byHeader[k.header]
		h[1]++
		byHeader[k.header] = h
		if !expected {
			extra = append(extra, k)
		}
	}
	c.Found = len(got) - c.Ignored
	c.Missing, c.Extra = len(missing), len(extra)
	for _, k := range extra {
		if ri, ok := o.byOff[k.off]; ok && o.recs[ri].plen > 0 {
			switch r := o.recs[ri]; {
			case r.owned == 0:
				c.ExtraOnCopies++
			case r.owned < r.plen:
				c.ExtraOnPartCopies++
			}
		}
	}
	c.Recall, c.Precision = rnRatio(c.Matching, c.Expected), rnRatio(c.Matching, c.Found)
	x := byHeader["X-Forwarded-For"]
	c.XFFExpected, c.XFFFound, c.XFFMatching = x[0], x[1], x[2]
	c.XFFRecall, c.XFFPrecision = rnRatio(x[2], x[0]), rnRatio(x[2], x[1])
	c.equal = len(missing) == 0 && len(extra) == 0
	c.short = fmt.Sprintf("expected %d, xffidx %d, matching %d: recall %.2f %%, precision %.2f %% (X-Forwarded-For: recall %.2f %%, precision %.2f %%)",
		c.Expected, c.Found, c.Matching, 100*c.Recall, 100*c.Precision, 100*c.XFFRecall, 100*c.XFFPrecision)
	var hs []string
	for _, h := range rnHeaders {
		v := byHeader[h]
		hs = append(hs, fmt.Sprintf("%s %d/%d found, %d reported", h, v[2], v[0], v[1]))
	}
	var segs, sinces []string
	for _, s := range []string{"1", "2", "3", "4+"} {
		segs = append(segs, fmt.Sprintf("segment %s: %d/%d", s, bySeg[s][1], bySeg[s][0]))
	}
	for _, s := range []string{"<0", "0", "1-63", "≥64"} {
		sinces = append(sinces, fmt.Sprintf("%s: %d/%d", s, bySince[s][1], bySince[s][0]))
	}
	c.summary = fmt.Sprintf("(record, header, address) hits: %s; %d missing, %d extra (%d on records that only repeat bytes an earlier record carried, %d on records that partly do), %d duplicate rows, %d rows of excluded requests ignored; by header: %s; found by the segment of the request holding the line: %s; by records between the request's first segment and the line's: %s",
		c.short, c.Missing, c.Extra, c.ExtraOnCopies, c.ExtraOnPartCopies, c.DupRows, c.Ignored, strings.Join(hs, "; "), strings.Join(segs, ", "), strings.Join(sinces, ", "))
	sortHits := func(h []rnHit) {
		sort.Slice(h, func(i, j int) bool {
			if h[i].off != h[j].off {
				return h[i].off < h[j].off
			}
			if h[i].header != h[j].header {
				return h[i].header < h[j].header
			}
			return h[i].addr < h[j].addr
		})
	}
	sortHits(missing)
	sortHits(extra)
	for i, k := range missing {
		if i == 10 {
			c.details = append(c.details, fmt.Sprintf("... and %d more missing", len(missing)-i))
			break
		}
		info := o.hits[k]
		r := info.req
		c.details = append(c.details, fmt.Sprintf("missing: offset %d (frame %d) %s %s: %s line %q starts in segment %d of %d of request #%d (%s) of %s, %d records after the request's first segment (frame %d)",
			k.off, o.byOff[k.off]+1, k.header, k.addr, k.header, rnCut(info.line.Value, 80), info.line.Seg, r.segs, r.n, r.method, o.flows[r.flow].key(), info.line.Since, r.firstRec+1))
	}
	for i, k := range extra {
		if i == 10 {
			c.details = append(c.details, fmt.Sprintf("... and %d more extra", len(extra)-i))
			break
		}
		where := "the oracle has no such line starting in that record"
		if ri, ok := o.byOff[k.off]; ok {
			for _, w := range o.firstCarriers[ri] {
				if _, ok := o.hits[rnHit{off: o.recs[w].off, header: k.header, addr: k.addr}]; ok {
					where = fmt.Sprintf("a copy of bytes first carried by frame %d (offset %d), where the oracle expects this hit", w+1, o.recs[w].off)
					break
				}
			}
		}
		c.details = append(c.details, fmt.Sprintf("extra: offset %d (frame %d) %s %s: %s; that record: %s", k.off, o.byOff[k.off]+1, k.header, k.addr, where, o.describe(k.off)))
	}
	return c
}

func rnCut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

type rnTupleCheck struct {
	err     string
	details []string
}

// rnCheckTuples checks the 5-tuples of a handful of xffidx's rows against
// tshark's decoding of the same frames and the oracle's flows.
func rnCheckTuples(capPath string, o *rnOracle, rows []rnXRow) *rnTupleCheck {
	c := &rnTupleCheck{}
	if len(rows) == 0 {
		c.err = "xffidx reported no hit at all"
		return c
	}
	sorted := slices.Clone(rows)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Offset < sorted[j].Offset })
	var pick []rnXRow
	for i := 0; i < 12; i++ {
		pick = append(pick, sorted[i*(len(sorted)-1)/11])
	}
	frames := map[int]rnXRow{}
	var nums []string // "frame.number == N", or-ed: tshark 3.x and 4.x spell sets differently
	for _, r := range pick {
		ri, ok := o.byOff[r.Offset]
		if !ok {
			c.err = fmt.Sprintf("xffidx row at offset %d: no record starts there", r.Offset)
			return c
		}
		frames[ri+1] = r
		nums = append(nums, "frame.number == "+strconv.Itoa(ri+1))
	}
	out, err := exec.Command("tshark", "-r", capPath, "-n", "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", strings.Join(nums, " || "),
		"-T", "fields", "-E", "separator=/t", "-e", "frame.number", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport").Output()
	if err != nil {
		c.err = fmt.Sprintf("tshark: %v", err)
		return c
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 5 {
			continue
		}
		fr, _ := strconv.Atoi(f[0])
		r, ok := frames[fr]
		if !ok {
			continue
		}
		seen++
		ts := rnJoinHostPort(f[1], f[2]) + " > " + rnJoinHostPort(f[3], f[4])
		xs := rnJoinHostPort(r.SrcIP, strconv.Itoa(r.SrcPort)) + " > " + rnJoinHostPort(r.DstIP, strconv.Itoa(r.DstPort))
		ofl := ""
		if fl := o.recs[fr-1].flow; fl >= 0 {
			ofl = o.flows[fl].key()
		}
		c.details = append(c.details, fmt.Sprintf("frame %d (offset %d, %s %s): xffidx %s, tshark %s, oracle %s", fr, r.Offset, r.Header, r.XFFIP, xs, ts, ofl))
		if xs != ts || ts != ofl {
			c.err = fmt.Sprintf("frame %d: 5-tuples differ: xffidx %s, tshark %s, oracle %s", fr, xs, ts, ofl)
		}
	}
	if seen != len(frames) && c.err == "" {
		c.err = fmt.Sprintf("tshark decoded %d of the %d frames asked for", seen, len(frames))
	}
	return c
}

// ---------------------------------------------------------------------------
// Saving a sample for the developers.

func rnSave(dir, capPath string, o *rnOracle, run *rnRun, ts *rnTsCompare, cmp *rnCmp, rows []rnXRow) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	capture := filepath.Join(dir, "capture.pcap")
	if abs, _ := filepath.Abs(capPath); abs != capture {
		b, err := os.ReadFile(capPath)
		if err != nil {
			return err
		}
		if err := os.WriteFile(capture, b, 0o644); err != nil {
			return err
		}
	}
	type expected struct {
		Offset       int64  `json:"offset"`
		Frame        int    `json:"frame"`
		Header       string `json:"header"`
		Addr         string `json:"addr"`
		Value        string `json:"value"`
		Flow         string `json:"flow"`
		Request      int    `json:"request"`
		Method       string `json:"method"`
		Segment      int    `json:"segment"`
		Segments     int    `json:"request_segments"`
		RecordsSince int    `json:"records_since_request_start"`
		FirstFrame   int    `json:"request_first_frame"`
	}
	var keys []rnHit
	for k := range o.hits {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.off != b.off {
			return a.off < b.off
		}
		if a.header != b.header {
			return a.header < b.header
		}
		return a.addr < b.addr
	})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, k := range keys {
		info := o.hits[k]
		if err := enc.Encode(expected{Offset: k.off, Frame: o.byOff[k.off] + 1, Header: k.header, Addr: k.addr, Value: info.line.Value,
			Flow: o.flows[info.req.flow].key(), Request: info.req.n, Method: info.req.method, Segment: info.line.Seg, Segments: info.req.segs,
			RecordsSince: info.line.Since, FirstFrame: info.req.firstRec + 1}); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "expected.ndjson"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	buf.Reset()
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "xffidx-hits.ndjson"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	summary := map[string]any{
		"capture":          "capture.pcap",
		"oracle":           o.summary(),
		"interleaving":     o.interleaving(),
		"tshark":           ts.summary,
		"tshark_counts":    ts,
		"xffidx":           cmp.summary,
		"xffidx_counts":    cmp,
		"xffidx_details":   cmp.details,
		"expected_hits":    len(o.hits),
		"expected_by_head": o.hitsByHeader(),
	}
	if run != nil {
		summary["run"] = run.summary()
		summary["loadgen"] = run.load
		summary["relay"] = run.relay
	}
	b, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return err
	}
	readme := `A capture made by cmd/xffidx/realnet_test.go (TestRealNet): haproxy (option
forwardfor) in front of nginx, traffic shaped to 100 Mbit/s with per-flow
round robin, a relay reordering ~2 % and duplicating ~0.5 % of the frames,
tcpdump on the backend's interface. See the comment at the top of that file.

capture.pcap        the capture
expected.ndjson     the oracle's hits: one (record offset, header, address) per line,
                    with the line's value, its connection, the request's index in it,
                    the segment of the request (stream order) holding the line's first
                    byte, and the records between the request's first segment and it
xffidx-hits.ndjson  what xffidx reported when the sample was saved
summary.json        counts: the run, the oracle, tshark, xffidx's recall and precision

Compare a build of xffidx with the oracle on this capture (no root needed):

  REALNET_PCAP=` + capture + ` go test -run TestRealNet -v ./cmd/xffidx
`
	return os.WriteFile(filepath.Join(dir, "README"), []byte(readme), 0o644)
}
