package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Environment variables of the HTTPS connection, Consul's names with
// peerd's first where peerd has its own.
const (
	// EnvCACert and EnvConsulCACert name the PEM file of the CA that
	// signed the agent's HTTPS certificate.
	EnvCACert       = "PEERD_CACERT"
	EnvConsulCACert = "CONSUL_CACERT"
	// EnvClientCert and EnvClientKey name the client certificate and key
	// for an agent that verifies incoming connections.
	EnvClientCert = "CONSUL_CLIENT_CERT"
	EnvClientKey  = "CONSUL_CLIENT_KEY"
	// EnvTLSServerName is the name the agent's certificate must carry,
	// when it is not the address's host.
	EnvTLSServerName = "CONSUL_TLS_SERVER_NAME"
	// EnvConsulHTTPAddr is Consul's agent address variable, read after
	// PEERD_HTTP_ADDR; EnvConsulHTTPSSL=true makes a host:port address
	// https.
	EnvConsulHTTPAddr = "CONSUL_HTTP_ADDR"
	EnvConsulHTTPSSL  = "CONSUL_HTTP_SSL"
)

// tlsFlags are peerctl's HTTPS flags.
type tlsFlags struct {
	caFile, clientCert, clientKey, serverName string
}

// first returns the first non-empty value.
func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// address is the agent address: -http-addr, PEERD_HTTP_ADDR, then
// CONSUL_HTTP_ADDR; with CONSUL_HTTP_SSL=true a host:port is https.
func (a *app) address() (string, error) {
	addr := first(a.httpAddr, a.env.getenv(EnvHTTPAddr), a.env.getenv(EnvConsulHTTPAddr))
	if v := a.env.getenv(EnvConsulHTTPSSL); v != "" {
		ssl, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("%s=%q: want true or false", EnvConsulHTTPSSL, v)
		}
		if ssl && !strings.Contains(addr, "://") {
			addr = "https://" + first(addr, DefaultHTTPAddr)
		}
	}
	return addr, nil
}

// tlsConfig is the TLS configuration the flags and environment ask for,
// nil when they ask for none. With a CA file only that CA is trusted (not
// the system's roots).
func (a *app) tlsConfig() (*tls.Config, error) {
	caFile := first(a.tls.caFile, a.env.getenv(EnvCACert), a.env.getenv(EnvConsulCACert))
	certFile := first(a.tls.clientCert, a.env.getenv(EnvClientCert))
	keyFile := first(a.tls.clientKey, a.env.getenv(EnvClientKey))
	serverName := first(a.tls.serverName, a.env.getenv(EnvTLSServerName))
	if caFile == "" && certFile == "" && keyFile == "" && serverName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file (-ca-file): %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate: save the agent's CA there (peerctl ca roots -format json, or GET /v1/connect/ca/roots)", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("give the client certificate and its key together: -client-cert and -client-key (%s, %s)", EnvClientCert, EnvClientKey)
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate (-client-cert %s, -client-key %s): %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsHint says how to fix a failed verification of the agent's HTTPS
// certificate, "" for other errors.
func tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &host):
		return "the agent's certificate does not name the address: pass the name it carries with -tls-server-name (" + EnvTLSServerName + "); a certificate from the cluster CA names api.<trust domain>"
	case errors.As(err, &unknown), errors.As(err, &verify):
		return "pass the CA that signed the agent's HTTPS certificate with -ca-file (" + EnvCACert + "); for the cluster CA, save the active root of GET /v1/connect/ca/roots"
	case strings.Contains(err.Error(), "http: server gave HTTP response to HTTPS client"):
		return "the address serves plain HTTP: use http://"
	}
	return ""
}
