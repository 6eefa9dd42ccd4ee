// Package identity is peerd's SPIFFE naming and the certificate mechanics
// below its CA: the cluster's trust domain, workload and gateway SPIFFE IDs,
// the TLS names used for peering (the peering server name and the peered
// SNI), root generation and rotation by cross-signing, leaf signing, and the
// verification helpers that TLS callbacks use. The cluster CA itself (which
// root is active, bootstrap, rotation, the chain a leaf is served with) is
// internal/ca, which drives the CA type here.
//
// Naming follows Consul so that peerd and Consul clusters can peer:
//
//	trust domain   <cluster-id>.peerd                  (Consul: <cluster-id>.consul)
//	service        spiffe://<td>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<svc>
//	mesh gateway   spiffe://<td>/gateway/mesh/dc/<dc>
//	server name    server.<dc>.peering.<td>
//	peered SNI     <svc>.<ns>.<partition>.<peer>.external.<td>
//
// The package is pure computation: it does no I/O, keeps no package-level
// mutable state, and reads the clock only through CA.Now (nil = time.Now);
// functions that need a time without a CA take it as an argument. Randomness
// (keys, serial numbers) comes from crypto/rand. Certificates and keys go in
// and out as PEM strings, which is how the catalog stores them.
//
// Roots carry critical name constraints for their trust domain (SPIFFE IDs
// of the trust domain, DNS names under it, no IP addresses), so a leaf
// signed with a root's key outside SignLeaf fails verification anyway.
//
// Keys that peerd generates, holds or certifies are ECDSA P-256: ParseKeyPEM,
// SignLeaf and the CA's roots reject every other key type with an error
// wrapping ErrUnsupportedKey. Certificates from peers (their trust bundles
// and leaves) are accepted whatever their key type, since a Consul CA may use
// RSA.
//
// Errors: every error caused by bad input wraps one of the sentinels below,
// so callers can test it with errors.Is; the message names the step and the
// offending value. Failures of crypto/rand or crypto/x509 while creating a
// certificate are returned wrapped with the step that failed.
//
// The package imports nothing of peerd's: it is a leaf.
package identity

import "errors"

// Sentinel errors. Every input error the package returns wraps one of them.
var (
	// ErrInvalidName reports a cluster ID, trust domain, namespace, datacenter,
	// service, partition or DNS name that is empty or malformed.
	ErrInvalidName = errors.New("invalid name")
	// ErrNotServiceID reports a SPIFFE ID that is not a service identity.
	ErrNotServiceID = errors.New("not a service SPIFFE ID")
	// ErrNotGatewayID reports a SPIFFE ID that is not a mesh gateway's.
	ErrNotGatewayID = errors.New("not a mesh gateway SPIFFE ID")
	// ErrNotAgentID reports a SPIFFE ID that is not a peerd agent's (a
	// node certificate's).
	ErrNotAgentID = errors.New("not a peerd agent SPIFFE ID")
	// ErrInvalidPEM reports text that is not PEM, holds the wrong number of
	// blocks, a block of the wrong type, or a block that does not parse.
	ErrInvalidPEM = errors.New("invalid PEM")
	// ErrUnsupportedKey reports a key that is not ECDSA P-256 where peerd needs
	// one.
	ErrUnsupportedKey = errors.New("unsupported key type (only ECDSA P-256 is supported)")
	// ErrInvalidRoot reports a CA root whose certificate is not a SPIFFE CA
	// certificate or whose key does not match it.
	ErrInvalidRoot = errors.New("invalid CA root")
	// ErrExpired reports a root used outside its validity period.
	ErrExpired = errors.New("certificate expired or not yet valid")
	// ErrInvalidRequest reports a LeafRequest or CA setting that cannot be
	// honoured.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrVerify reports a certificate chain that does not verify, or a verified
	// leaf without exactly one SPIFFE ID.
	ErrVerify = errors.New("certificate verification failed")
)
