package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/agent/httpapi/pbrelay"
	"github.com/peerd/peerd/catalog"
)

// relayRemoteAddr is the RemoteAddr of a relayed request: net/http never
// gives a request from the network one without a port.
const relayRemoteAddr = "relay"

// relayChunk bounds one relayed body message (the internal gRPC port takes
// messages up to 8 MiB).
const relayChunk = 1 << 20

// relay forwards a request to a node that can serve it, over the internal
// gRPC port: the leader when this node is a follower, else any live server
// (this node is a client; that server relays on to its leader unless
// ?stale). Reads, snapshot restores and the ACL system's writes (GET, PUT,
// DELETE) are relayed.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, stale bool) error {
	conn, err := s.cluster.LeaderConn()
	if err != nil {
		if !s.cluster.IsServer() && errors.Is(err, catalog.ErrNoServers) {
			return fmt.Errorf("relay: %w", err)
		}
		return fmt.Errorf("relay: %w", catalog.ErrNoLeader)
	}
	method := r.Method
	if method != http.MethodGet && method != http.MethodPut && method != http.MethodDelete {
		return errBadRequest("relay: %s requests are not relayed: send it to the leader", method)
	}
	req := &pbrelay.ReadRequest{Path: r.URL.Path, RawQuery: r.URL.RawQuery, FromServer: s.cluster.IsServer(), Method: method}
	for name, values := range r.Header {
		req.Headers = append(req.Headers, &pbrelay.Header{Name: name, Values: values}) // hop-by-hop ones are dropped where it is served
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := pbrelay.NewHTTPRelayClient(conn).Do(ctx)
	if err != nil {
		return fmt.Errorf("relay: %w: %v", catalog.ErrNoLeader, err)
	}
	if err := stream.Send(req); err != nil {
		return fmt.Errorf("relay: %w: %v", catalog.ErrNoLeader, err)
	}
	if method == http.MethodPut && r.Body != nil {
		buf := make([]byte, relayChunk)
		for {
			n, rerr := r.Body.Read(buf)
			if n > 0 {
				if err := stream.Send(&pbrelay.ReadRequest{Body: buf[:n]}); err != nil {
					return fmt.Errorf("relay: %w: %v", catalog.ErrNoLeader, err)
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("relay: read the request body: %w", rerr)
			}
		}
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("relay: %w: %v", catalog.ErrNoLeader, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("relay: %w: %v", catalog.ErrNoLeader, err)
	}
	for _, h := range first.GetHeaders() {
		w.Header()[h.GetName()] = h.GetValues()
	}
	w.WriteHeader(int(first.GetStatus()))
	_, _ = w.Write(first.GetBody())
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// The status is sent: the client sees a cut body.
			s.log.Warn("relayed answer cut", "path", r.URL.Path, "err", err)
			return nil
		}
		_, _ = w.Write(c.GetBody())
	}
}

func hopByHop(name string) bool {
	for _, h := range hopHeaders {
		if http.CanonicalHeaderKey(name) == h {
			return true
		}
	}
	return false
}

var hopHeaders = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RegisterRelay serves the read relay on g (the internal gRPC port).
func (s *Server) RegisterRelay(g *grpc.Server) {
	pbrelay.RegisterHTTPRelayServer(g, relayServer{s: s})
}

type relayServer struct {
	pbrelay.UnimplementedHTTPRelayServer
	s *Server
}

// Do serves one relayed request on this node's own handler.
func (rs relayServer) Do(stream grpc.BidiStreamingServer[pbrelay.ReadRequest, pbrelay.ReadChunk]) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	u := &url.URL{Path: req.GetPath(), RawQuery: req.GetRawQuery()}
	if len(u.Path) == 0 || u.Path[0] != '/' {
		return status.Errorf(codes.InvalidArgument, "relay: path %q is not absolute", req.GetPath())
	}
	method := req.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	if method != http.MethodGet && method != http.MethodPut && method != http.MethodDelete {
		return status.Errorf(codes.InvalidArgument, "relay: method %q is not relayed", method)
	}
	body, bw := io.Pipe()
	go func() {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				_ = bw.Close()
				return
			}
			if err != nil {
				_ = bw.CloseWithError(err)
				return
			}
			if _, err := bw.Write(m.GetBody()); err != nil {
				return // the handler stopped reading
			}
		}
	}()
	defer body.Close()
	hr, err := http.NewRequestWithContext(stream.Context(), method, u.String(), body)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "relay: %v", err)
	}
	for _, h := range req.GetHeaders() {
		if !hopByHop(h.GetName()) {
			hr.Header[http.CanonicalHeaderKey(h.GetName())] = h.GetValues()
		}
	}
	hr.Header.Del(relayedHeader)
	if req.GetFromServer() {
		hr.Header.Set(relayedHeader, "1")
	}
	hr.RemoteAddr = relayRemoteAddr
	cw := &chunkWriter{stream: stream, header: http.Header{}}
	rs.s.Handler().ServeHTTP(cw, hr)
	return cw.finish()
}

// chunkWriter is an http.ResponseWriter that streams to a relay client.
type chunkWriter struct {
	stream interface {
		Send(*pbrelay.ReadChunk) error
	}
	header  http.Header
	status  int
	sentHdr bool
	buf     []byte
	err     error
}

func (c *chunkWriter) Header() http.Header { return c.header }

func (c *chunkWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *chunkWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.WriteHeader(http.StatusOK)
	c.buf = append(c.buf, b...)
	for len(c.buf) >= relayChunk {
		c.send(c.buf[:relayChunk])
		c.buf = c.buf[relayChunk:]
	}
	return len(b), c.err
}

// Flush sends what is buffered (streamed answers).
func (c *chunkWriter) Flush() {
	if c.err == nil && (len(c.buf) > 0 || !c.sentHdr) {
		c.WriteHeader(http.StatusOK)
		c.send(c.buf)
		c.buf = nil
	}
}

func (c *chunkWriter) send(body []byte) {
	if c.err != nil {
		return
	}
	chunk := &pbrelay.ReadChunk{Body: body}
	if !c.sentHdr {
		chunk.Status = int32(c.status)
		for name, values := range c.header {
			chunk.Headers = append(chunk.Headers, &pbrelay.Header{Name: name, Values: values})
		}
		c.sentHdr = true
	}
	c.err = c.stream.Send(chunk)
}

func (c *chunkWriter) finish() error {
	c.WriteHeader(http.StatusOK)
	if len(c.buf) > 0 || !c.sentHdr {
		c.send(c.buf)
	}
	return c.err
}
