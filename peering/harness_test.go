package peering

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/peerd/peerd/catalog"
)

// testCluster is a one-server cluster in this process: catalog member, the
// internal gRPC server (management, forwarding) and the TLS gRPC server (the
// peering stream), each on a free loopback port.
type testCluster struct {
	name     string
	cluster  *catalog.Cluster
	peering  *Server
	grpcAddr string
	tlsAddr  string
}

// newTestCluster starts a dev-mode single server named name in datacenter
// dc and waits until it leads and has a CA. mod may adjust the peering
// config (heartbeats, clock) before the controller starts.
func newTestCluster(t *testing.T, name, dc string, mod func(*Config)) *testCluster {
	t.Helper()
	internalLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := catalog.DevConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter = name, uuid.NewString(), dc
	cc.GRPCAddr, cc.GRPCTLSAddr = internalLn.Addr().String(), tlsLn.Addr().String()
	c, err := catalog.New(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	pc := DefaultConfig()
	pc.Cluster = c
	pc.HeartbeatInterval, pc.HeartbeatTimeout = 200*time.Millisecond, 2*time.Second
	pc.ReconnectMin, pc.ReconnectMax = 50*time.Millisecond, 500*time.Millisecond
	if mod != nil {
		mod(&pc)
	}
	p, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	internal := grpc.NewServer()
	c.RegisterGRPC(internal)
	p.RegisterManagement(internal)
	secure := grpc.NewServer(p.StreamServerOptions()...)
	p.RegisterStream(secure)
	go func() { _ = internal.Serve(internalLn) }()
	go func() { _ = secure.Serve(tlsLn) }()
	p.Start()
	t.Cleanup(func() {
		secure.Stop()
		internal.Stop()
		_ = c.Shutdown(false)
	})
	tc := &testCluster{name: name, cluster: c, peering: p, grpcAddr: cc.GRPCAddr, tlsAddr: cc.GRPCTLSAddr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c.IsLeader() {
			if _, _, err := p.activeRoot(); err == nil {
				if _, err := p.getCertificate(&tls.ClientHelloInfo{}); err == nil {
					return tc
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: no leader with a CA after 10 s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
