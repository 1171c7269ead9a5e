package xff

import (
	"strings"
	"testing"
)

// values lists the lines' values, those of other headers than
// X-Forwarded-For as "Header=value".
func values(res Result) []string {
	var out []string
	for _, l := range res.Lines {
		if l.Header != XForwardedFor {
			out = append(out, l.Header.String()+"="+string(l.Value))
			continue
		}
		out = append(out, string(l.Value))
	}
	return out
}

func TestScanRequests(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    []string
		open    bool
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", []string{"1.2.3.4"}, false},
		{"lowercase no space", "GET / HTTP/1.1\r\nx-forwarded-for:10.90.14.76,10.158.233.64\r\n\r\n", []string{"10.90.14.76,10.158.233.64"}, false},
		{"whitespace", "GET / HTTP/1.0\r\nX-FORWARDED-FOR: \t 1.2.3.4 \t\r\n\r\n", []string{"1.2.3.4"}, false},
		{"two lines", "POST /x HTTP/1.1\r\nx-forwarded-for: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n", []string{"1.1.1.1", "2.2.2.2"}, false},
		{"lf only", "GET / HTTP/1.1\nX-Forwarded-For: 1.2.3.4\n\n", []string{"1.2.3.4"}, false},
		{"look-alikes", "GET / HTTP/1.1\r\nX-Original-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: h\r\nX-Real-IPs: 6.6.6.7\r\nX-Forwarded-For-X: 6.6.6.8\r\nForwarded-For: 6.6.6.9\r\nX-Forwarded: for=6.6.6.10\r\nCF-Connecting-IPv6: ::6\r\n\r\n", nil, false},
		{"other headers", "GET / HTTP/1.1\r\nx-real-ip: 1.1.1.1\r\nFORWARDED: for=2.2.2.2\r\nTrue-Client-IP: 3.3.3.3\r\ncf-connecting-ip:4.4.4.4\r\nX-Forwarded-For: 5.5.5.5\r\n\r\n",
			[]string{"X-Real-IP=1.1.1.1", "Forwarded=for=2.2.2.2", "True-Client-IP=3.3.3.3", "CF-Connecting-IP=4.4.4.4", "5.5.5.5"}, false},
		{"obs-fold keeps the header", "GET / HTTP/1.1\r\nForwarded: for=1.1.1.1,\r\n for=2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n\t4.4.4.4\r\n\r\n",
			[]string{"Forwarded=for=1.1.1.1,", "Forwarded=for=2.2.2.2", "3.3.3.3", "4.4.4.4"}, false},
		{"in body", "POST / HTTP/1.1\r\nContent-Length: 26\r\n\r\nX-Forwarded-For: 6.6.6.6\r\n", nil, false},
		{"pipelined", "GET /a HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n\r\nGET /b HTTP/1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n", []string{"1.1.1.1", "2.2.2.2"}, false},
		{"pipelined after body", "POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /b HTTP/1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n", []string{"2.2.2.2"}, false},
		{"pipelined after chunked", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /b HTTP/1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n", []string{"2.2.2.2"}, false},
		{"response", "HTTP/1.1 200 OK\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", nil, false},
		{"echoed request in response body", "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nGET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", nil, false},
		{"cut value", "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4, 5.6", []string{"1.2.3.4, 5.6"}, true},
		{"open block", "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n", []string{"1.2.3.4"}, true},
		{"garbage line ends block", "GET / HTTP/1.1\r\n\x00\x01binary\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", nil, false},
		{"leading empty lines", "\r\nGET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", []string{"1.2.3.4"}, false},
		{"not http", "SSH-2.0-OpenSSH\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := ScanRequests([]byte(c.payload), nil)
			got := values(res)
			if strings.Join(got, "|") != strings.Join(c.want, "|") || (len(c.want) > 0 && res.Open != c.open) {
				t.Errorf("lines %q open %v, want %q open %v", got, res.Open, c.want, c.open)
			}
		})
	}
}

func TestScanHeadersContinuation(t *testing.T) {
	res := ScanHeaders([]byte("Cookie: a=b\r\nX-Forwarded-For: 9.9.9.9\r\n\r\nbody X-Forwarded-For: 6.6.6.6\r\n"), nil)
	if got := values(res); len(got) != 1 || got[0] != "9.9.9.9" {
		t.Errorf("got %q", got)
	}
}

// TestScanCRCutFromLF: a continuation segment that ends with the CR of the
// block's final empty line (its LF in the next segment) is an open block
// whose last line is cut, not a malformed one: its forwarding line counts.
func TestScanCRCutFromLF(t *testing.T) {
	res := ScanHeaders([]byte("Cookie: a=b\r\nX-Forwarded-For: 9.9.9.9\r\n\r"), nil)
	if got := values(res); len(got) != 1 || got[0] != "9.9.9.9" || res.Malformed || !res.Open || !res.LastCut {
		t.Errorf("lines %q malformed %v open %v last cut %v", got, res.Malformed, res.Open, res.LastCut)
	}
}

func TestPipelinedRequestNumbers(t *testing.T) {
	res := ScanRequests([]byte("GET /a HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 3.3.3.3\r\n\r\nGET /b HTTP/1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n"), nil)
	if len(res.Lines) != 3 || res.Lines[0].Request != 0 || res.Lines[1].Request != 0 || res.Lines[2].Request != 1 {
		t.Errorf("lines %+v", res.Lines)
	}
}

func TestParseAddr(t *testing.T) {
	cases := map[string]string{
		"1.2.3.4":                               "1.2.3.4",
		"1.2.3.4:5678":                          "1.2.3.4",
		"[2001:db8::1]:443":                     "2001:db8::1",
		"[2001:db8::1]":                         "2001:db8::1",
		"2001:0DB8:0:0:0:0:0:1":                 "2001:db8::1",
		"::ffff:192.0.2.5":                      "192.0.2.5",
		"10.000.000.03":                         "10.0.0.3",
		"\"1.2.3.4\"":                           "1.2.3.4",
		"fe80::1%eth0":                          "fe80::1",
		"240e:398:309e:ed80:794f:be2b:5f91:660": "240e:398:309e:ed80:794f:be2b:5f91:660",
		"unknown":                               "",
		"_hidden":                               "",
		"":                                      "",
		"${jndi:ldap://x}":                      "",
		"1.2.3":                                 "",
		"1.2.3.256":                             "",
		"1.2.3.4.5":                             "",
		"0001.2.3.4":                            "",
		"1.2.3.4:port":                          "",
		"[2001:db8::1]:x":                       "",
		"example.com:80":                        "",
	}
	for in, want := range cases {
		a, ok := ParseAddr([]byte(in))
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("ParseAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestElements(t *testing.T) {
	var got []string
	Elements([]byte("a, b,,c , "), false, func(e []byte) { got = append(got, string(e)) })
	if strings.Join(got, "|") != "a|b||c|" {
		t.Errorf("got %q", got)
	}
	got = nil
	Elements([]byte("1.1.1.1, 2.2.2.2, 3.3"), true, func(e []byte) { got = append(got, string(e)) })
	if strings.Join(got, "|") != "1.1.1.1|2.2.2.2" {
		t.Errorf("cut: got %q", got)
	}
}

func TestParseAddrNoAlloc(t *testing.T) {
	elems := [][]byte{[]byte("203.0.113.7"), []byte("2001:db8::1"), []byte("[2001:db8::2]:80")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, e := range elems {
			ParseAddr(e)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

// FuzzScan checks that the header-block scanner and the element parser never
// panic, keep values inside the payload, and that every address they accept
// round-trips through its canonical spelling.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4, [2001:db8::1]:443\r\n\r\n",
		"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /b HTTP/1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /b HTTP/1.1\r\nx-forwarded-for:10.000.000.03,unknown\r\n\r\n",
		"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4,\r\n 5.6.7.8\r\n",
		"GET / HTTP/1.1\r\nForwarded: for=\"[2001:db8::1]:_x\";proto=https, for=unknown,for=\"1.2.\\3.4\"\r\nX-Real-IP: 9.9.9.9\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, res := range []Result{ScanRequests(payload, nil), ScanHeaders(payload, nil)} {
			for _, l := range res.Lines {
				if l.Start < 0 || l.Start > len(payload) {
					t.Fatalf("line start %d outside payload of %d", l.Start, len(payload))
				}
				l.Header.Elements(l.Value, l.Cut, func(e []byte) {
					a, ok := ParseAddr(e)
					if !ok {
						return
					}
					b, ok := ParseAddr([]byte(a.String()))
					if !ok || b != a || a.Is4In6() || a.Zone() != "" {
						t.Fatalf("%q parsed as %v, which reparses as %v", e, a, b)
					}
				})
			}
		}
	})
}

// TestForwardedElements: RFC 7239's examples and the spellings seen in the
// wild, each element's for= node read as an address ("-": not an address).
func TestForwardedElements(t *testing.T) {
	cases := []struct {
		value string
		cut   bool
		want  string
	}{
		{`for="_gazonk"`, false, "-"},
		{`For="[2001:db8:cafe::17]:4711"`, false, "2001:db8:cafe::17"},
		{`for=192.0.2.60;proto=http;by=203.0.113.43`, false, "192.0.2.60"},
		{`for=192.0.2.43, for=198.51.100.17`, false, "192.0.2.43|198.51.100.17"},
		{`for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown`, false, "192.0.2.43|2001:db8:cafe::17|-"},
		{`for=unknown, for=192.0.2.43:47011`, false, "-|192.0.2.43"},
		{`for="192.0.2.43:_hidden"`, false, "192.0.2.43"},
		{`for="[2001:db8::1]:_p1"`, false, "2001:db8::1"},
		{`by=10.0.0.1;proto=https`, false, "-"},
		{`proto=https;FOR="[::ffff:192.0.2.1]";host=a`, false, "192.0.2.1"},
		{`for="a,b;c", for=1.2.3.4`, false, "-|1.2.3.4"},
		{`for="1.2.\3.4"`, false, "1.2.3.4"},
		{`for=1.2.3.4 ; proto=http`, false, "1.2.3.4"},
		{`for=2001:db8::7`, false, "2001:db8::7"}, // unquoted IPv6: not RFC 7239, but written by some proxies
		{`for=1.1.1.1, for=2.2`, true, "1.1.1.1"},
		{`for=1.1.1.1, `, false, "1.1.1.1|-"},
		{`for="[2001:db8::1`, false, "-"},
		{`for=`, false, "-"},
		{`for`, false, "-"},
		{`for=1.2.3.4;for=5.6.7.8`, false, "1.2.3.4"}, // one for= per element: the first
		{`;for=1.2.3.4;`, false, "1.2.3.4"},
		// A malformed element on the left (written by the client) does not
		// hide the elements proxies appended after it.
		{`for="x, for=192.0.2.1`, false, "-|192.0.2.1"},
		{`for="x\", for=192.0.2.2`, false, "-|192.0.2.2"},
		{`proto=h"ttp, for=192.0.2.3`, false, "-|192.0.2.3"},
		{`for=x, y=", for="[2001:db8::1]"`, false, "-|-|2001:db8::1"},
		{`for=1.1.1.1 junk, for=2.2.2.2`, false, "-|2.2.2.2"},
		{`by, for=2.2.2.2`, false, "-|2.2.2.2"},
		{`for="` + strings.Repeat("a", 200) + `", for=2.2.2.2`, false, "-|2.2.2.2"},
	}
	for _, c := range cases {
		var got []string
		Forwarded.Elements([]byte(c.value), c.cut, func(e []byte) {
			if a, ok := ParseAddr(e); ok {
				got = append(got, a.String())
			} else {
				got = append(got, "-")
			}
		})
		if strings.Join(got, "|") != c.want {
			t.Errorf("%s (cut %v): got %q, want %q", c.value, c.cut, strings.Join(got, "|"), c.want)
		}
	}
	// The other headers are lists like X-Forwarded-For.
	var got []string
	XRealIP.Elements([]byte("1.2.3.4, [2001:db8::1]:80"), false, func(e []byte) { got = append(got, string(e)) })
	if strings.Join(got, "|") != "1.2.3.4|[2001:db8::1]:80" {
		t.Errorf("X-Real-IP: %q", got)
	}
}

func TestParseHeader(t *testing.T) {
	for h := range NumHeaders {
		for _, s := range []string{h.String(), strings.ToLower(h.String()), strings.ToUpper(h.String())} {
			if got, ok := ParseHeader(s); !ok || got != h {
				t.Errorf("ParseHeader(%q) = %v %v", s, got, ok)
			}
		}
		if name := h.nameOf(); !strings.EqualFold(name, h.String()+":") {
			t.Errorf("%v: name %q", h, name)
		}
	}
	for _, s := range []string{"", "X-Forwarded", "Forwarded-For", "X-Real-IPs", "x-forwarded-for:"} {
		if _, ok := ParseHeader(s); ok {
			t.Errorf("ParseHeader(%q) accepted", s)
		}
	}
}
