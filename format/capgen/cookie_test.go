package capgen

import (
	"bytes"
	"testing"
)

// TestBulkCookies checks Config.CookieRate: the bulk mode with big cookies
// keeps its Truth exact (check reads every hit back from the packets),
// header blocks span several segments with the XFF line in a later one,
// and the option is inert when off.
func TestBulkCookies(t *testing.T) {
	for _, c := range []struct {
		cfg                  Config
		cont, split, cutName int // at least
		cookies              int
	}{
		// As a benchmark capture would be made (capgen -cookie-rate 0.08 -cookie-max 12K).
		{Config{Seed: 42, Format: FormatPcap, LinkType: LinkEthernet, TargetBytes: 6 << 20, CookieRate: 0.08, CookieMax: 12 << 10}, 5, 0, 0, 5},
		{Config{Seed: 43, Format: FormatPcapNG, LinkType: LinkSLL2, TargetBytes: 4 << 20, XFFRate: 0.1, CookieRate: 0.5,
			IPv6Transport: true, Tunnels: true}, 50, 3, 1, 100},
		{Config{Seed: 44, Format: FormatPcap, LinkType: LinkEthernet, TargetBytes: 2 << 20, CookieRate: 0.3, SnapLen: 300}, 0, 0, 0, 20},
	} {
		cfg := c.cfg
		t.Run(name(cfg), func(t *testing.T) {
			file, tr := gen1(t, cfg)
			check(t, cfg, file, tr)
			var cont, split, cutName int
			for _, n := range tr.notes {
				if n&noteCont != 0 {
					cont++
				}
				if n&noteSplit != 0 {
					split++
				}
				if n&noteCutName != 0 {
					cutName++
				}
			}
			cookies := bytes.Count(file, []byte("\r\nCookie: "))
			t.Logf("%d hits: %d in a continued header block, %d split, %d split in the name; %d cookies", len(tr.Hits), cont, split, cutName, cookies)
			if cont < c.cont || split < c.split || cutName < c.cutName || cookies < c.cookies {
				t.Errorf("%d hits in continued header blocks, %d split lines, %d split in the name, %d cookies", cont, split, cutName, cookies)
			}
		})
	}
	// Off, the sizes change nothing.
	base := Config{Seed: 7, Format: FormatPcap, LinkType: LinkEthernet, TargetBytes: 2 << 20}
	a, _ := gen1(t, base)
	base.CookieMin, base.CookieMax = 100, 200
	b, _ := gen1(t, base)
	if !bytes.Equal(a, b) {
		t.Errorf("cookie sizes without CookieRate change the capture")
	}
	if bytes.Contains(a, []byte("Cookie: ")) {
		t.Errorf("cookies without CookieRate")
	}
}
