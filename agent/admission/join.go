package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/jointoken"
)

// JoinConfig is a node's request to be admitted.
type JoinConfig struct {
	// Token is the join token string.
	Token string
	// Node, Role and Datacenter name the node.
	Node, Role, Datacenter string
	// Timeout bounds each server tried; 0 = 10 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Join obtains a node certificate with a join token: it tries each server
// the token lists; on each it first fetches the roots, checks that one of
// them has the token's pin and that the server's certificate chains to that
// root, and only then sends the token.
func Join(ctx context.Context, cfg JoinConfig) (Material, error) {
	tok, err := jointoken.Parse(cfg.Token)
	if err != nil {
		return Material{}, fmt.Errorf("join token: %w", err)
	}
	if tok.Role != cfg.Role {
		return Material{}, fmt.Errorf("join token grants the %s role, but this node is a %s (%s)", tok.Role, cfg.Role, roleHint(cfg.Role))
	}
	if tok.Datacenter != cfg.Datacenter {
		return Material{}, fmt.Errorf("join token is for datacenter %q, but this node is in %q (set -datacenter)", tok.Datacenter, cfg.Datacenter)
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		return Material{}, fmt.Errorf("node key: %w", err)
	}
	pubPEM, err := PublicKeyPEM(key.Public())
	if err != nil {
		return Material{}, fmt.Errorf("node key: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	var errs []error
	for _, addr := range tok.Servers {
		m, err := joinVia(ctx, addr, tok, cfg, pubPEM, timeout)
		if err == nil {
			m.KeyPEM = keyPEM
			log.Info("admitted to the cluster", "server", addr, "role", cfg.Role, "token", tok.ID)
			return m, nil
		}
		if errors.Is(err, jointoken.ErrPin) {
			log.Error("server failed the CA pin check; not sending the token", "server", addr, "err", err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return Material{}, fmt.Errorf("join the cluster with token %s: %w", tok.ID, errors.Join(errs...))
}

func roleHint(role string) string {
	if role == jointoken.RoleServer {
		return "create a server token with `peerd join-token create -role server`"
	}
	return "create a client token with `peerd join-token create -role client`, or add -server"
}

func joinVia(ctx context.Context, addr string, tok jointoken.Token, cfg JoinConfig, pubPEM string, timeout time.Duration) (Material, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	root, err := pinnedRoot(ctx, addr, tok.CAPin)
	if err != nil {
		return Material{}, err
	}
	// The token travels only on a connection whose handshake verified the
	// server against the pinned root: a rogue server fails the handshake
	// and never sees it.
	pool := x509.NewCertPool()
	pool.AddCert(root)
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified against the pinned root below, not a host name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyServer(raw, pool)
		},
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return Material{}, err
	}
	defer conn.Close()
	resp, err := pbadmission.NewAdmissionServiceClient(conn).Join(ctx, &pbadmission.JoinRequest{
		Token: tok.String(), Node: cfg.Node, Role: cfg.Role, Datacenter: cfg.Datacenter, PublicKeyPem: pubPEM,
	})
	if err != nil {
		return Material{}, err
	}
	m := Material{CertPEM: resp.GetChainPem(), RootPEMs: resp.GetRootPems(), GossipKey: resp.GetGossipKey(),
		GossipAddrs: resp.GetGossipAddrs(), SecretsKey: resp.GetSecretsKey()}
	if cfg.Role == jointoken.RoleServer && m.SecretsKey == "" {
		return Material{}, errors.New("the server sent no secrets key: a server cannot open the raft log without it")
	}
	if m.GossipKey == "" {
		m.GossipKey = tok.GossipKey
	}
	return m, nil
}

// pinnedRoot fetches the roots a server offers (over a connection that
// trusts nothing and carries nothing secret) and returns the one with pin.
func pinnedRoot(ctx context.Context, addr, pin string) (*x509.Certificate, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // only public roots are read; they are checked against the pin
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	roots, err := pbadmission.NewAdmissionServiceClient(conn).Roots(ctx, &pbadmission.RootsRequest{})
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster roots: %w", err)
	}
	var all []*x509.Certificate
	for _, p := range roots.GetRootPems() {
		certs, err := identity.ParseCertsPEM(p)
		if err != nil {
			return nil, fmt.Errorf("server's roots: %w", err)
		}
		all = append(all, certs...)
	}
	return jointoken.PinnedRoot(pin, all)
}

// verifyServer checks a server's chain (leaf first) against the pinned
// root.
func verifyServer(raw [][]byte, pool *x509.CertPool) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", jointoken.ErrPin)
	}
	inter := x509.NewCertPool()
	var leaf *x509.Certificate
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("server certificate %d: %w", i, err)
		}
		if i == 0 {
			leaf = c
		} else {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: the server's certificate does not chain to the pinned root: %v", jointoken.ErrPin, err)
	}
	return nil
}
