package l7proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"testing/iotest"
)

func TestPeekFraming(t *testing.T) {
	tests := []struct {
		name string
		in   string
		size int
		want int
	}{
		{"content-length only", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 0, framingOK},
		{"chunked only", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, framingOK},
		{"both", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, framingConflict},
		{"both, other order and case", "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nHost: x\r\ncontent-LENGTH: 5\r\n\r\n", 0, framingConflict},
		{"both, bare LF", "POST / HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n", 0, framingConflict},
		{"names in values and continuations do not count", "GET / HTTP/1.1\r\nHost: x\r\nX-A: Content-Length: 5\r\n Transfer-Encoding: chunked\r\n\r\n", 0, framingOK},
		{"headers past the body do not count", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nTransfer-Encoding: chunked\r\n\r\n", 0, framingOK},
		{"header block larger than the buffer", "POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 200) + "\r\nTransfer-Encoding: chunked\r\n\r\n", 64, framingUnknown},
		{"connection ends inside the headers", "POST / HTTP/1.1\r\nHost: x\r\nContent-Len", 0, framingOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = 16 << 10
			}
			// One byte per read: the block arrives in pieces.
			br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tt.in)), size)
			if _, err := br.Peek(1); err != nil {
				t.Fatal(err)
			}
			if got := peekFraming(br); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.in {
				t.Fatalf("peekFraming consumed input: %q left of %q", rest, tt.in)
			}
		})
	}
}

// FuzzPeekFraming checks that peekFraming never panics, never consumes
// input, and never passes a request net/http would read as chunked while
// its header also carries a Content-Length (which net/http then drops).
func FuzzPeekFraming(f *testing.F) {
	for _, s := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\nContent-length: 0\n\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\nTransfer-Encoding:chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 512)
		if _, err := br.Peek(1); err != nil {
			return
		}
		got := peekFraming(br)
		if br.Buffered() > 0 {
			if b, _ := br.Peek(br.Buffered()); !bytes.Equal(b, in[:len(b)]) {
				t.Fatal("peekFraming consumed input")
			}
		}
		req, err := http.ReadRequest(br)
		if err != nil || len(req.TransferEncoding) == 0 || got != framingOK {
			return
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(in)))
		if _, err := tp.ReadLine(); err != nil {
			return
		}
		h, err := tp.ReadMIMEHeader()
		if err == nil && len(h["Content-Length"]) > 0 {
			t.Fatalf("passed a chunked request that carried Content-Length: %q", in)
		}
	})
}
