package xff

import (
	"strings"
	"testing"
)

func values(res Result) []string {
	var out []string
	for _, l := range res.Lines {
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
		{"look-alikes", "GET / HTTP/1.1\r\nX-Original-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: h\r\nX-Real-IP: 6.6.6.7\r\nX-Forwarded-For-X: 6.6.6.8\r\n\r\n", nil, false},
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

func TestIndexName(t *testing.T) {
	cases := map[string]int{
		"X-Forwarded-For: 1":                            -1 + 1,
		"GET / HTTP/1.1\r\nx-forwarded-for:":            16,
		"GET / HTTP/1.1\r\nX-Original-Forwarded-For: 1": -1,
		"--------x-forwarded-for:":                      8, // line starts are checked later
		"a\nX-FORWARDED-FOR:":                           2,
		"a\nX-Forwarded-For":                            -1,
		"\r-forwarded-for:":                             -1,
	}
	for in, want := range cases {
		if got := IndexName([]byte(in)); got != want {
			t.Errorf("IndexName(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestEndsWithNamePrefix(t *testing.T) {
	cases := map[string]bool{
		"Accept: */*\r\nX-Forwa":          true,
		"Accept: */*\r\nx":                true,
		"Accept: */*\r\nX-Forwarded-For:": false, // complete: IndexName finds it
		"Accept: */*\r\nX-Real":           false,
		"Accept: */*\r\n":                 false,
		"X-Forwa":                         false, // no line start in reach
	}
	for in, want := range cases {
		if got := EndsWithNamePrefix([]byte(in)); got != want {
			t.Errorf("EndsWithNamePrefix(%q) = %v", in, got)
		}
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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, res := range []Result{ScanRequests(payload, nil), ScanHeaders(payload, nil)} {
			for _, l := range res.Lines {
				if l.Start < 0 || l.Start > len(payload) {
					t.Fatalf("line start %d outside payload of %d", l.Start, len(payload))
				}
				Elements(l.Value, l.Cut, func(e []byte) {
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
		if i := IndexName(payload); i >= 0 && !strings.EqualFold(string(payload[i:i+len(Name)]), Name) {
			t.Fatalf("IndexName found %q", payload[i:i+len(Name)])
		}
	})
}

// TestIndexDashPair checks the assembly against the generic loop on inputs
// with dashes at every alignment around the 32- and 64-byte steps.
func TestIndexDashPair(t *testing.T) {
	for n := 0; n < 200; n++ {
		for a := 0; a < n; a++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte('a' + (i*7)%26)
			}
			b[a] = '-'
			if a+dashGap < n {
				b[a+dashGap] = '-'
			}
			if a > 3 {
				b[a-3] = '-' // a lone dash before the pair
			}
			if got, want := indexDashPair(b), indexDashPairGeneric(b); got != want {
				t.Fatalf("len %d pair at %d: got %d, want %d", n, a, got, want)
			}
		}
	}
}

func FuzzIndexDashPair(f *testing.F) {
	f.Add([]byte("--------x-forwarded-for:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := indexDashPair(b), indexDashPairGeneric(b); got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
	})
}
