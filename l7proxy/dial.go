package l7proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

var (
	errNoHealthy = errors.New("no healthy endpoint")
	errNoGateway = errors.New("no gateway identity")
)

// alpnFor is what a TLS client offers for a protocol: the gateway serves
// HTTP/1.1 and HTTP/2 for HTTP-family services and raw streams for tcp.
func alpnFor(protocol string) []string {
	switch protocol {
	case "http":
		return []string{"http/1.1"}
	case "http2", "grpc":
		return []string{"h2"}
	}
	return nil
}

// dial opens a connection to ep: plaintext for a local instance, mTLS
// presenting the leaf of as for node and peer endpoints. The server must
// present one of ep.ids, verified against this cluster's roots (node) or the
// peer's trust bundle (peer).
func (p *Proxy) dial(ctx context.Context, ep *endpoint, as spiffeid.ID, alpn []string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{Control: p.mark.Control}
	raw, err := d.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", ep.kind, ep.addr, err)
	}
	if ep.kind == epLocal {
		return raw, nil
	}
	cfg, err := p.clientTLS(ctx, ep, as, alpn)
	if err != nil {
		raw.Close()
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		p.m.handshakeFail.WithLabelValues("upstream", "handshake").Inc()
		return nil, fmt.Errorf("TLS handshake with %s %s (%s): %w", ep.kind, ep.addr, ep.sni, err)
	}
	return tc, nil
}

// clientTLS is the TLS configuration for dialling ep as identity as.
func (p *Proxy) clientTLS(ctx context.Context, ep *endpoint, as spiffeid.ID, alpn []string) (*tls.Config, error) {
	st := p.cfg.View()
	var ts *trustSet
	var err error
	if ep.kind == epPeer {
		ts, err = p.trust.peerTrust(st, ep.peer)
	} else {
		ts, err = p.trust.localTrust(st)
	}
	if err != nil {
		return nil, err
	}
	var cert *tls.Certificate
	if ep.kind == epNode && p.cfg.NodeCertificate != nil {
		cert = p.cfg.NodeCertificate()
	} else if cert, err = p.leaves.getClient(ctx, as); err != nil {
		return nil, err
	}
	ids := ep.ids
	return &tls.Config{
		MinVersion:         p.cfg.MinTLSVersion,
		ServerName:         ep.sni,
		NextProtos:         alpn,
		ClientSessionCache: p.sessions,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		},
		// The server is verified by SPIFFE ID below, not by host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := identity.VerifyLeaf(cs.PeerCertificates, ts.pool, p.cfg.Now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("server certificate of %s: %w", ep.addr, err)
			}
			if !slices.Contains(ids, id.String()) {
				return fmt.Errorf("server %s presented %s, want one of %v", ep.addr, id, ids)
			}
			return nil
		},
	}, nil
}

// gatewayID is this cluster's gateway identity, presented on node-to-node
// hops after the first node has authorized the caller.
func (p *Proxy) gatewayID() (spiffeid.ID, error) {
	ts, err := p.trust.localTrust(p.cfg.View())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %w", errNoGateway, err)
	}
	return identity.GatewayID(ts.td, p.cfg.Datacenter)
}

// serviceID is the identity of a service of this cluster.
func (p *Proxy) serviceID(service string) (spiffeid.ID, error) {
	ts, err := p.trust.localTrust(p.cfg.View())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return identity.ServiceID(ts.td, identity.DefaultNamespace, p.cfg.Datacenter, service)
}
