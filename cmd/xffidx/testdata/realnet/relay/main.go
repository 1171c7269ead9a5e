// Command relay bridges two network interfaces with AF_PACKET raw sockets,
// like a two-port switch, and on the A→B direction disturbs the TCP data
// frames the way a real path does now and then: it holds back a few percent
// of them until a few later frames of the same flow have passed (so they
// arrive out of order) and sends a few others twice. The B→A direction is
// forwarded untouched.
//
// It is a helper of cmd/xffidx/realnet_test.go, run inside its own network
// namespace:
//
//	relay -a rl0 -b rl1 -reorder 0.02 -dup 0.005 -seed 1
//
// On SIGTERM or SIGINT it sends what it still holds and prints its counters
// as one JSON object on stdout. Decisions come from a PRNG with a fixed seed,
// one draw per data frame in arrival order: the rates are reproducible, the
// exact frames depend on timing.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type stats struct {
	AtoB           int64   `json:"frames_a_to_b"`
	BtoA           int64   `json:"frames_b_to_a"`
	DataAtoB       int64   `json:"tcp_data_frames_a_to_b"`
	Held           int64   `json:"held"`
	Overtaken      int64   `json:"held_released_after_overtaken"`
	HeldTimeout    int64   `json:"held_released_by_timeout"`
	Duplicated     int64   `json:"duplicated"`
	SendErrors     int64   `json:"send_errors"`
	RecvDropsA     int64   `json:"socket_drops_a"`
	RecvDropsB     int64   `json:"socket_drops_b"`
	ReorderRate    float64 `json:"reorder_rate"`
	DupRate        float64 `json:"dup_rate"`
	HoldPositions  int     `json:"hold_positions_max"`
	HoldMaxMillis  int64   `json:"hold_max_ms"`
	MeasuredHeld   float64 `json:"measured_held_fraction"`
	MeasuredDup    float64 `json:"measured_dup_fraction"`
	MeasuredReord  float64 `json:"measured_overtaken_fraction"`
	SecondsRunning float64 `json:"seconds"`
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// open returns an AF_PACKET socket bound to the interface, receiving every
// frame that arrives on it (not those sent on it).
func open(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return -1, err
	}
	// Protocol 0 until bound, so that no frame of another interface is queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", name, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("promiscuous %s: %w", name, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
	// A short receive timeout lets the A→B loop release held frames on time.
	tv := unix.NsecToTimeval(int64(2 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// drops reads and resets the socket's count of frames dropped for lack of
// buffer space.
func drops(fd int) int64 {
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return -1
	}
	return int64(st.Drops)
}

type flowKey [12]byte

// tcpData returns the flow of an Ethernet/IPv4/TCP frame with payload.
func tcpData(f []byte) (flowKey, bool) {
	var k flowKey
	if len(f) < 14+20+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return k, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != 6 || ihl < 20 || len(ip) < ihl+20 {
		return k, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total > len(ip) {
		total = len(ip)
	}
	tcp := ip[ihl:]
	doff := int(tcp[12]>>4) * 4
	if total-ihl-doff <= 0 {
		return k, false
	}
	copy(k[0:8], ip[12:20])
	copy(k[8:12], tcp[0:4])
	return k, true
}

type held struct {
	frame    []byte
	left     int // frames of the same flow still to pass before release
	deadline time.Time
	dup      bool
}

type relay struct {
	a, b      int
	reorder   float64
	dup       float64
	positions int
	holdMax   time.Duration
	rng       *rand.Rand
	st        stats
	stop      atomic.Bool
	held      map[flowKey][]*held
	nheld     int
}

func (r *relay) send(fd int, f []byte) {
	if err := unix.Send(fd, f, 0); err != nil {
		atomic.AddInt64(&r.st.SendErrors, 1)
	}
}

// releaseFlow sends the held frames of flow k that enough later frames of
// the flow have overtaken.
func (r *relay) releaseFlow(k flowKey) {
	list := r.held[k]
	keep := list[:0]
	for _, h := range list {
		h.left--
		if h.left > 0 {
			keep = append(keep, h)
			continue
		}
		if !h.dup {
			r.st.Overtaken++
		}
		r.send(r.b, h.frame)
		r.nheld--
	}
	r.setHeld(k, keep)
}

// releaseExpired sends the held frames past their deadline, or all of them
// with all set.
func (r *relay) releaseExpired(now time.Time, all bool) {
	for k, list := range r.held {
		keep := list[:0]
		for _, h := range list {
			if !all && !now.After(h.deadline) {
				keep = append(keep, h)
				continue
			}
			if !h.dup {
				r.st.HeldTimeout++
			}
			r.send(r.b, h.frame)
			r.nheld--
		}
		r.setHeld(k, keep)
	}
}

func (r *relay) setHeld(k flowKey, list []*held) {
	if len(list) == 0 {
		delete(r.held, k)
	} else {
		r.held[k] = list
	}
}

func (r *relay) hold(k flowKey, f []byte, left int, dup bool) {
	c := append([]byte(nil), f...)
	r.held[k] = append(r.held[k], &held{frame: c, left: left, deadline: time.Now().Add(r.holdMax), dup: dup})
	r.nheld++
}

// aToB forwards A→B, disturbing TCP data frames.
func (r *relay) aToB() {
	buf := make([]byte, 1<<16)
	lastSweep := time.Now()
	for !r.stop.Load() {
		n, from, err := unix.Recvfrom(r.a, buf, 0)
		if r.nheld > 0 && time.Since(lastSweep) > time.Millisecond {
			lastSweep = time.Now()
			r.releaseExpired(lastSweep, false)
		}
		if err != nil {
			continue // timeout (EAGAIN) or EINTR
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		atomic.AddInt64(&r.st.AtoB, 1)
		f := buf[:n]
		k, data := tcpData(f)
		if !data {
			r.send(r.b, f)
			continue
		}
		r.st.DataAtoB++
		// One draw per data frame, whatever happens to it.
		x := r.rng.Float64()
		pos := 1 + r.rng.IntN(r.positions)
		if x < r.reorder {
			r.st.Held++
			r.hold(k, f, pos, false)
			continue
		}
		r.send(r.b, f)
		if len(r.held[k]) > 0 {
			r.releaseFlow(k) // this frame overtook them
		}
		if x < r.reorder+r.dup {
			// The copy follows at once or after 1-2 later frames of the flow.
			r.st.Duplicated++
			if pos == 1 {
				r.send(r.b, f)
			} else {
				r.hold(k, f, pos-1, true)
			}
		}
	}
	r.releaseExpired(time.Time{}, true)
}

// bToA forwards B→A untouched.
func (r *relay) bToA() {
	buf := make([]byte, 1<<16)
	for !r.stop.Load() {
		n, from, err := unix.Recvfrom(r.b, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		atomic.AddInt64(&r.st.BtoA, 1)
		r.send(r.a, buf[:n])
	}
}

func main() {
	ifa := flag.String("a", "", "interface of side A (the proxy's)")
	ifb := flag.String("b", "", "interface of side B (the backend's)")
	reorder := flag.Float64("reorder", 0.02, "fraction of A→B TCP data frames held back")
	dup := flag.Float64("dup", 0.005, "fraction of A→B TCP data frames sent twice")
	positions := flag.Int("positions", 3, "a held frame waits for 1..N later frames of its flow")
	holdMax := flag.Duration("hold-max", 30*time.Millisecond, "longest a frame is held")
	seed := flag.Uint64("seed", 1, "PRNG seed")
	flag.Parse()
	if *ifa == "" || *ifb == "" || *positions < 1 {
		fmt.Fprintln(os.Stderr, "usage: relay -a IF -b IF [-reorder P] [-dup P] [-positions N] [-hold-max D] [-seed N]")
		os.Exit(2)
	}
	a, err := open(*ifa)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	b, err := open(*ifb)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	r := &relay{a: a, b: b, reorder: *reorder, dup: *dup, positions: *positions, holdMax: *holdMax,
		rng: rand.New(rand.NewPCG(*seed, 0x5eed)), held: map[flowKey][]*held{}}
	drops(a)
	drops(b)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.aToB() }()
	go func() { defer wg.Done(); r.bToA() }()
	fmt.Fprintln(os.Stderr, "relay: forwarding", *ifa, "<->", *ifb)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	r.stop.Store(true)
	wg.Wait()
	r.st.RecvDropsA, r.st.RecvDropsB = drops(a), drops(b)
	r.st.ReorderRate, r.st.DupRate = *reorder, *dup
	r.st.HoldPositions, r.st.HoldMaxMillis = *positions, holdMax.Milliseconds()
	if r.st.DataAtoB > 0 {
		d := float64(r.st.DataAtoB)
		r.st.MeasuredHeld = float64(r.st.Held) / d
		r.st.MeasuredDup = float64(r.st.Duplicated) / d
		r.st.MeasuredReord = float64(r.st.Overtaken) / d
	}
	r.st.SecondsRunning = time.Since(start).Seconds()
	out, _ := json.Marshal(&r.st)
	fmt.Println(string(out))
}
