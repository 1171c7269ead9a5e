// Command loadgen is the client side of cmd/xffidx/realnet_test.go: many
// concurrent keep-alive HTTP/1.1 clients, each connection bound to one of a
// range of local source addresses, sending requests whose header blocks span
// many TCP segments (large cookies), with POST bodies (Content-Length and
// chunked) full of header-like decoys, and with forwarding headers of their
// own now and then.
//
//	loadgen -target 198.18.1.254:80 -src 198.18.1.1 -nsrc 200 -c 300 -n 6000 -dur 20s
//	loadgen -target 198.18.1.254:80 -src 198.18.1.1 -probe 15s
//
// Requests are written as raw bytes (not net/http) so that every byte is
// the generator's choice; request i is the same for a given -seed whatever
// connection sends it. At the end it prints one JSON object of counters on
// stdout. -probe sends GET /probe (Connection: close) until a 200 comes
// back or the time is up.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	Requests     int64   `json:"requests_sent"`
	OK           int64   `json:"responses_200"`
	Other        int64   `json:"responses_other"`
	Errors       int64   `json:"errors"`
	Conns        int64   `json:"connections"`
	Gets         int64   `json:"get"`
	PostCL       int64   `json:"post_content_length"`
	PostChunked  int64   `json:"post_chunked"`
	WithCookie   int64   `json:"with_cookie"`
	CookieBytes  int64   `json:"cookie_bytes"`
	OwnHeaders   int64   `json:"with_own_forwarding_headers"`
	BodyDecoys   int64   `json:"body_decoy_lines"`
	FakeRequests int64   `json:"bodies_with_a_fake_request"`
	RequestBytes int64   `json:"request_bytes"`
	Sources      int     `json:"source_addresses_used"`
	Seconds      float64 `json:"seconds"`
	FirstError   string  `json:"first_error,omitempty"`
}

var st counters
var firstErr sync.Once

func fail(err error) {
	atomic.AddInt64(&st.Errors, 1)
	firstErr.Do(func() { st.FirstError = err.Error() })
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randText(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[r.IntN(len(alnum))]
	}
	return b
}

func caseOf(r *rand.Rand, name string) string {
	switch r.IntN(4) {
	case 0:
		return strings.ToLower(name)
	case 1:
		return strings.ToUpper(name)
	default:
		return name
	}
}

// element returns one client-supplied list element: an address in one of the
// spellings proxies write, or a non-address.
func element(r *rand.Rand) string {
	n := 1 + r.IntN(254)
	switch r.IntN(8) {
	case 0:
		return fmt.Sprintf("203.0.113.%d:%d", n, 1024+r.IntN(60000))
	case 1:
		return fmt.Sprintf("2001:db8:%x::%x", r.IntN(0x10000), n)
	case 2:
		return fmt.Sprintf("[2001:db8::%x]:443", n)
	case 3:
		return fmt.Sprintf("::ffff:203.0.113.%d", n)
	case 4:
		return "unknown"
	default:
		return fmt.Sprintf("203.0.113.%d", n)
	}
}

func forwardedElement(r *rand.Rand) string {
	n := 1 + r.IntN(254)
	switch r.IntN(6) {
	case 0:
		return fmt.Sprintf(`for="[2001:db8:cafe::%x]:4711"`, n)
	case 1:
		return fmt.Sprintf("for=192.0.2.%d;proto=https;by=203.0.113.1", n)
	case 2:
		return fmt.Sprintf(`proto=http;for="192.0.2.%d:_hidden"`, n)
	case 3:
		return "for=unknown"
	default:
		return fmt.Sprintf("for=192.0.2.%d", n)
	}
}

// ownHeaders returns forwarding header lines a client (or a proxy in front
// of the test's haproxy) might send.
func ownHeaders(r *rand.Rand) []string {
	var h []string
	if r.IntN(3) != 0 {
		els := make([]string, 1+r.IntN(3))
		for i := range els {
			els[i] = element(r)
		}
		h = append(h, caseOf(r, "X-Forwarded-For")+": "+strings.Join(els, ", "))
	}
	if r.IntN(3) == 0 {
		h = append(h, caseOf(r, "X-Real-IP")+": "+fmt.Sprintf("203.0.113.%d", 1+r.IntN(254)))
	}
	if r.IntN(3) == 0 {
		els := make([]string, 1+r.IntN(2))
		for i := range els {
			els[i] = forwardedElement(r)
		}
		h = append(h, caseOf(r, "Forwarded")+": "+strings.Join(els, ", "))
	}
	if r.IntN(5) == 0 {
		h = append(h, "True-Client-IP: "+fmt.Sprintf("2001:db8:1::%x", 1+r.IntN(0xffff)))
	}
	if r.IntN(5) == 0 {
		h = append(h, "CF-Connecting-IP: "+fmt.Sprintf("198.18.200.%d", 1+r.IntN(254)))
	}
	if len(h) == 0 {
		h = append(h, "X-Forwarded-For: "+element(r))
	}
	return h
}

// body returns a POST body of text lines among which are header-like decoys
// and sometimes a whole fake request, or random bytes.
func body(r *rand.Rand) (b []byte, decoys int, fake bool) {
	size := 64 + r.IntN(24000)
	if r.IntN(5) == 0 {
		b = make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b, 0, false
	}
	var buf bytes.Buffer
	for buf.Len() < size {
		switch r.IntN(10) {
		case 0, 1:
			fmt.Fprintf(&buf, "%s: 198.51.100.%d\r\n", caseOf(r, "X-Forwarded-For"), 1+r.IntN(254))
			decoys++
		case 2:
			fmt.Fprintf(&buf, "X-Real-IP: 198.51.100.%d\r\nForwarded: for=198.51.100.%d\r\n", 1+r.IntN(254), 1+r.IntN(254))
			decoys += 2
		case 3:
			if !fake {
				fmt.Fprintf(&buf, "GET /fake HTTP/1.1\r\nHost: decoy.example\r\nX-Forwarded-For: 198.51.100.%d, 198.51.100.%d\r\nTrue-Client-IP: 198.51.100.%d\r\n\r\n",
					1+r.IntN(254), 1+r.IntN(254), 1+r.IntN(254))
				fake = true
				decoys += 2
			}
		default:
			fmt.Fprintf(&buf, "field%d=%s\r\n", r.IntN(100), randText(r, 8+r.IntN(120)))
		}
	}
	return buf.Bytes(), decoys, fake
}

// request builds request i.
func request(seed uint64, i int64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	kind := r.IntN(100) // <55 GET, <80 POST with Content-Length, else chunked
	method := "GET"
	if kind >= 55 {
		method = "POST"
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s /api/v1/items/%d?page=%d HTTP/1.1\r\n", method, i, r.IntN(50))
	w.WriteString("Host: shop.example\r\nUser-Agent: realnet-loadgen/1\r\nAccept: */*\r\nAccept-Language: en-GB,en;q=0.8\r\n")
	var own []string
	if r.IntN(100) < 25 {
		own = ownHeaders(r)
		atomic.AddInt64(&st.OwnHeaders, 1)
	}
	ownFirst := r.IntN(2) == 0
	if ownFirst {
		for _, h := range own {
			w.WriteString(h + "\r\n")
		}
	}
	if r.IntN(100) < 55 {
		n := 1024 + r.IntN(15*1024+1)
		v := randText(r, n)
		if r.IntN(4) == 0 && n > 200 {
			// Header-like text inside a value, not at a line start.
			copy(v[100:], fmt.Sprintf(";xff=X-Forwarded-For: 198.51.100.%d;", 1+r.IntN(254)))
		}
		w.WriteString("Cookie: session=")
		w.Write(v)
		w.WriteString("\r\n")
		atomic.AddInt64(&st.WithCookie, 1)
		atomic.AddInt64(&st.CookieBytes, int64(n))
	}
	if !ownFirst {
		for _, h := range own {
			w.WriteString(h + "\r\n")
		}
	}
	switch {
	case kind < 55:
		atomic.AddInt64(&st.Gets, 1)
		w.WriteString("\r\n")
	case kind < 80:
		b, d, fake := body(r)
		fmt.Fprintf(&w, "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(b))
		w.Write(b)
		atomic.AddInt64(&st.PostCL, 1)
		atomic.AddInt64(&st.BodyDecoys, int64(d))
		if fake {
			atomic.AddInt64(&st.FakeRequests, 1)
		}
	default:
		b, d, fake := body(r)
		w.WriteString("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
		for len(b) > 0 {
			n := min(len(b), 1+r.IntN(4000))
			fmt.Fprintf(&w, "%x\r\n", n)
			w.Write(b[:n])
			w.WriteString("\r\n")
			b = b[n:]
		}
		w.WriteString("0\r\n\r\n")
		atomic.AddInt64(&st.PostChunked, 1)
		atomic.AddInt64(&st.BodyDecoys, int64(d))
		if fake {
			atomic.AddInt64(&st.FakeRequests, 1)
		}
	}
	return w.Bytes()
}

// readResponse reads one response and reports its status and whether the
// server will close the connection.
func readResponse(br *bufio.Reader) (int, bool, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, false, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length, closing := 0, false
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return 0, false, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(value)
		case "connection":
			closing = strings.EqualFold(value, "close")
		case "transfer-encoding":
			return 0, false, errors.New("chunked response not expected")
		}
	}
	if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
		return 0, false, err
	}
	return status, closing, nil
}

// hangUp closes a connection the way a browser that is done does, but only
// after haproxy has closed its side: nginx answers a request before reading
// its body, so haproxy may still be forwarding the body of the last request,
// and a plain close would make it abort that request half-sent.
func hangUp(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	}
	c.Close()
}

func dial(src netip.Addr, target string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 10 * time.Second}
	return d.Dial("tcp", target)
}

func probe(src netip.Addr, target string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		var c net.Conn
		c, err = dial(src, target)
		if err == nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			_, err = io.WriteString(c, "GET /probe HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
			var status int
			if err == nil {
				status, _, err = readResponse(bufio.NewReader(c))
			}
			c.Close()
			if err == nil && status == 200 {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("status %d", status)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func main() {
	target := flag.String("target", "", "haproxy address:port")
	srcFlag := flag.String("src", "", "first local source address")
	nsrc := flag.Int("nsrc", 1, "number of consecutive source addresses to use")
	conc := flag.Int("c", 300, "concurrent connections")
	total := flag.Int64("n", 6000, "requests to send in all")
	dur := flag.Duration("dur", 20*time.Second, "stop sending new requests after this long")
	seed := flag.Uint64("seed", 1, "seed of the request contents")
	probeFor := flag.Duration("probe", 0, "only probe the path end to end, for at most this long")
	flag.Parse()
	src, err := netip.ParseAddr(*srcFlag)
	if *target == "" || err != nil || !src.Is4() || *nsrc < 1 || *conc < 1 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -target HOST:PORT -src IPv4 [-nsrc N] [-c N] [-n N] [-dur D] [-seed N] [-probe D]")
		os.Exit(2)
	}
	if *probeFor > 0 {
		if err := probe(src, *target, *probeFor); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: probe:", err)
			os.Exit(1)
		}
		return
	}
	sources := make([]netip.Addr, *nsrc)
	a := src
	for i := range sources {
		sources[i] = a
		a = a.Next()
	}
	start := time.Now()
	stopAt := start.Add(*dur)
	var next atomic.Int64
	var used sync.Map
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(*seed, 1<<40+uint64(w)))
			for k := 0; ; k++ {
				if next.Load() >= *total || time.Now().After(stopAt) {
					return
				}
				s := sources[(w*7+k*13)%len(sources)]
				c, err := dial(s, *target)
				if err != nil {
					fail(err)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				used.Store(s, true)
				atomic.AddInt64(&st.Conns, 1)
				br := bufio.NewReaderSize(c, 8192)
				keep := 1 + r.IntN(40) // requests on this connection
				for j := 0; j < keep; j++ {
					i := next.Add(1) - 1
					if i >= *total || time.Now().After(stopAt) {
						hangUp(c)
						return
					}
					req := request(*seed, i)
					c.SetDeadline(time.Now().Add(30 * time.Second))
					if _, err := c.Write(req); err != nil {
						fail(err)
						break
					}
					atomic.AddInt64(&st.Requests, 1)
					atomic.AddInt64(&st.RequestBytes, int64(len(req)))
					status, closing, err := readResponse(br)
					if err != nil {
						fail(fmt.Errorf("request %d: %w", i, err))
						break
					}
					if status == 200 {
						atomic.AddInt64(&st.OK, 1)
					} else {
						atomic.AddInt64(&st.Other, 1)
					}
					if closing {
						break
					}
				}
				hangUp(c)
			}
		}(w)
	}
	wg.Wait()
	used.Range(func(any, any) bool { st.Sources++; return true })
	st.Seconds = time.Since(start).Seconds()
	out, _ := json.Marshal(&st)
	fmt.Println(string(out))
}
