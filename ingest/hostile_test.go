package ingest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
)

// TestZeroRegionsChunked: a capture with zero-filled regions (runs of
// records that captured nothing) is indexed whole, with every record
// counted, and the same however it is cut into chunks: a chunk that starts
// inside a region cannot resync there and is walked on from where the
// previous one stopped.
func TestZeroRegionsChunked(t *testing.T) {
	c := capgen.ZeroRegionCapture()
	path := filepath.Join(t.TempDir(), c.Name+".pcap")
	if err := os.WriteFile(path, c.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	want, wantInfo := hitsOf(t, path, int64(len(c.Data))+1, 1)
	if wantInfo.Packets != int64(c.Frames) || wantInfo.Hits != int64(len(c.Want)) || len(want) != len(c.Want) {
		t.Errorf("sequential: %d packets, %d hits %q; want %d packets, %d hits", wantInfo.Packets, wantInfo.Hits, want, c.Frames, len(c.Want))
	}
	// The records that captured nothing carry the first timestamp.
	if first := time.Unix(1600000001, 0).UTC(); !wantInfo.FirstTS.Equal(first) {
		t.Errorf("first timestamp %v, want %v", wantInfo.FirstTS, first)
	}
	for _, v := range c.Want {
		found := false
		for _, h := range want {
			found = found || strings.HasPrefix(h, v[0]+"@")
		}
		if !found {
			t.Errorf("%s not found in %q", v[0], want)
		}
	}
	for _, chunk := range []int64{4099, 65536 + 7, 1 << 20} {
		got, info := hitsOf(t, path, chunk, 2)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(info, wantInfo) {
			t.Errorf("chunk %d: hits %q, totals %+v;\nwant %q, %+v", chunk, got, info, want, wantInfo)
		}
	}
}
