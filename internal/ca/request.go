package ca

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// ErrRefused reports a leaf request that the CA's issuance rules refuse:
// an ID of another trust domain or of no workload shape, a DNS SAN the
// identity does not need, a negative TTL.
var ErrRefused = errors.New("leaf request refused")

// maxDNSNames bounds the DNS SANs of one leaf.
const maxDNSNames = 16

// checkRequest applies the issuance rules that need no caller identity to
// req, for a CA of trust domain td whose leaves live at most maxTTL, and
// returns the request to sign:
//
//   - the SPIFFE ID is required and must be of td, and either a service's
//     (identity.ParseServiceID) or a mesh gateway's (identity.ParseGatewayID);
//   - DNS SANs are allowed only for a service, and only the names the
//     gateway serves it under: its internal SNI and its peered SNIs
//     (<svc>.<ns>.<partition>.<peer>.external.<td>); no wildcard, at most
//     maxDNSNames;
//   - a TTL of 0 or above maxTTL becomes maxTTL (capped, not refused: each
//     node asks for its own -leaf-ttl, and a node configured longer than the
//     servers still gets working leaves, whose NotAfter says the truth).
func checkRequest(req LeafRequest, td spiffeid.TrustDomain, maxTTL time.Duration) (LeafRequest, error) {
	if req.ID.IsZero() {
		return LeafRequest{}, fmt.Errorf("no SPIFFE ID: the CA signs only workload and gateway identities: %w", ErrRefused)
	}
	if !req.ID.MemberOf(td) {
		return LeafRequest{}, fmt.Errorf("SPIFFE ID %q is not of trust domain %q: %w", req.ID, td.Name(), ErrRefused)
	}
	svc, svcErr := identity.ParseServiceID(req.ID)
	if svcErr != nil {
		if _, err := identity.ParseGatewayID(req.ID); err != nil {
			return LeafRequest{}, fmt.Errorf("SPIFFE ID %q is neither a service's nor a mesh gateway's: %w", req.ID, ErrRefused)
		}
	}
	if len(req.DNSNames) > maxDNSNames {
		return LeafRequest{}, fmt.Errorf("%d DNS SANs, at most %d: %w", len(req.DNSNames), maxDNSNames, ErrRefused)
	}
	for _, name := range req.DNSNames {
		if svcErr != nil {
			return LeafRequest{}, fmt.Errorf("DNS SAN %q: a gateway leaf has none: %w", name, ErrRefused)
		}
		if !serviceName(name, svc, td) {
			return LeafRequest{}, fmt.Errorf("DNS SAN %q is not a server name of %s: %w", name, req.ID, ErrRefused)
		}
	}
	if req.TTL < 0 {
		return LeafRequest{}, fmt.Errorf("TTL %v is negative: %w", req.TTL, ErrRefused)
	}
	if req.TTL == 0 || req.TTL > maxTTL {
		req.TTL = maxTTL
	}
	return req, nil
}

// serviceName reports whether name is one the gateway serves svc under:
// "<svc>.<ns>.<dc>.internal.<td>" for its own datacenter, or
// "<svc>.<ns>.<partition>.<peer>.external.<td>" for one peer.
func serviceName(name string, svc identity.ServiceIdentity, td spiffeid.TrustDomain) bool {
	if identity.ValidateDNSName(name) != nil {
		return false
	}
	if name == identity.InternalSNI(svc.Service, svc.Namespace, svc.Datacenter, td) {
		return true
	}
	rest, ok := strings.CutSuffix(name, ".external."+td.Name())
	if !ok {
		return false
	}
	labels := strings.Split(rest, ".")
	partition := svc.Partition
	if partition == "" {
		partition = identity.DefaultPartition
	}
	return len(labels) == 4 && labels[0] == svc.Service && labels[1] == svc.Namespace && labels[2] == partition && labels[3] != ""
}
