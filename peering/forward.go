package peering

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/peering/pbpeering"
)

// forwardedKey is the gRPC metadata key counting how many times a call was
// forwarded; a call is forwarded at most twice (client to server, follower
// to leader), so a stale view of the leader cannot make it loop.
const forwardedKey = "peerd-peering-forwarded"

const maxForwards = 2

// forwardRetry is how long a forwarded call retries while no leader is
// known.
const forwardRetry = 10 * time.Second

type forwardCount struct{}

// forwards returns how many times the call in ctx was forwarded already.
func forwards(ctx context.Context) int {
	n, _ := ctx.Value(forwardCount{}).(int)
	return n
}

// forward runs call against the leader's PeeringService (a server, from a
// client node), retrying while a leader is being elected.
func (s *Server) forward(ctx context.Context, call func(context.Context, pbpeering.PeeringServiceClient, ...grpc.CallOption) error) error {
	n := forwards(ctx)
	if n >= maxForwards {
		return &wrapped{msg: fmt.Sprintf("peering call forwarded %d times without reaching the leader: %s", n, catalog.ErrNoLeader), err: catalog.ErrNoLeader}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, strconv.Itoa(n+1))
	deadline := time.Now().Add(forwardRetry)
	backoff := 20 * time.Millisecond
	for {
		conn, err := s.cfg.Cluster.LeaderConn()
		if err == nil {
			var trailer metadata.MD
			err = call(ctx, pbpeering.NewPeeringServiceClient(conn), grpc.Trailer(&trailer))
			if err == nil {
				return nil
			}
			err = fromStatus(err, trailer)
		}
		retry := errors.Is(err, catalog.ErrNoLeader) || errors.Is(err, catalog.ErrNoServers)
		if !retry || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}
