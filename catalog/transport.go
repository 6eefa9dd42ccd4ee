package catalog

import (
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tcpStreamLayer is raft's stream layer over a listener we opened ourselves,
// so a port of 0 can be resolved before raft starts.
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

func (t *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
func (t *tcpStreamLayer) Accept() (net.Conn, error) { return t.ln.Accept() }
func (t *tcpStreamLayer) Close() error              { return t.ln.Close() }
func (t *tcpStreamLayer) Addr() net.Addr            { return t.advertise }

// refusal reports whether err carries a gRPC refusal: the caller may not,
// or asked wrongly, so asking again gets the same answer.
func refusal(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
		return true
	}
	return false
}

// toStatus maps cluster errors onto gRPC codes so the forwarding side can
// recover the sentinel it needs to decide whether to retry.
func toStatus(err error) error {
	// A refusal from further along (the leader refusing a relayed write)
	// keeps its code, so the caller does not take it for an outage.
	if refusal(err) {
		return status.Error(status.Code(err), err.Error())
	}
	switch {
	case errors.Is(err, ErrNoLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return status.Error(codes.Unavailable, ErrNoLeader.Error()+": "+err.Error())
	case errors.Is(err, ErrShutdown):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func randIndex(n int) int { return rand.IntN(n) }
