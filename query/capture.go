package query

import (
	"io"
	"os"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/index"
)

// capture is an open capture and the reader of its bytes at the offsets
// the index holds: the file itself, or, for a compressed capture, its
// decompressed stream, decoded from the restart point the index holds
// nearest before each offset read (never from the start, unless the
// container has no other point: a single zstd or lz4 frame).
type capture struct {
	f   *os.File
	src io.ReaderAt
	cf  *compressed.File // nil for a plain capture
}

// openCapture opens the capture of catalog entry info.
func openCapture(store *index.Store, info *index.FileInfo) (*capture, error) {
	f, err := format.Open(info.Path)
	if err != nil {
		return nil, err
	}
	c := &capture{f: f, src: f}
	if info.Container == "" {
		return c, nil
	}
	codec, _ := compressed.ParseCodec(info.Container) // the entry was validated
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var seek compressed.SeekFunc
	if store != nil {
		seek = store.SeekFunc(info.ID)
	}
	c.cf = compressed.NewFile(f, st.Size(), codec, seek, compressed.Options{})
	c.src = c.cf
	return c, nil
}

// cost adds what reading a compressed capture decoded to sum.
func (c *capture) cost(sum *Summary) {
	if c != nil && c.cf != nil {
		sum.Decompressed += c.cf.Decoded
		sum.Restarts += c.cf.Restarts
	}
}

func (c *capture) close() {
	if c != nil && c.f != nil {
		c.f.Close()
		c.f = nil
	}
}
