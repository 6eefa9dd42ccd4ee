package l7

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// EchoHeader is set on every answer of the echo server, so that a readiness
// probe through a proxy can tell the echo server's 200 from the proxy's own.
const (
	EchoHeader = "X-L7-Echo"
	EchoValue  = "l7echo"
)

// maxEchoBody caps the request body the echo server reads.
const maxEchoBody = 1 << 20

// EchoHandler answers every request with status 200 and a body: the request
// body for a request that has one (POST, PUT), else size bytes of 'x'. The
// answer always carries Content-Length, so it is never chunked.
func EchoHandler(size int) http.Handler {
	fixed := bytes.Repeat([]byte{'x'}, size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := fixed
		switch {
		case r.ContentLength > 0 && r.ContentLength <= maxEchoBody:
			body = make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, body); err != nil {
				http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
				return
			}
		case r.ContentLength != 0: // unknown length (chunked) or too long
			b, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody))
			if err != nil {
				http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
				return
			}
			body = b
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set(EchoHeader, EchoValue)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}
