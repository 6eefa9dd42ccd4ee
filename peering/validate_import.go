package peering

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// Bounds of what an imported instance may carry (Consul's meta limits).
const (
	maxImportMetaPairs   = 64
	maxImportMetaKey     = 128
	maxImportMetaValue   = 512
	maxImportSPIFFEIDs   = 16
	maxImportSPIFFEIDLen = 2048
)

// Reasons an import is refused as invalid, as the metric and the status
// name them.
const (
	refuseTrustDomain  = "trust_domain"
	refuseNoBundle     = "no_trust_bundle"
	refuseSNI          = "sni"
	refuseGateway      = "gateway_address"
	refuseSPIFFEID     = "spiffe_id"
	refuseMeta         = "meta"
	refuseReservedMeta = "reserved_meta" // stripped, not refused
)

// importChecks is what the instances of a peer are checked against.
type importChecks struct {
	// peerTD is the peer's trust domain pinned with the peering; "" until
	// its first trust bundle (on the acceptor).
	peerTD string
	// allowLocal accepts gateway addresses that are loopback, link-local,
	// unspecified, multicast or this cluster's node addresses.
	allowLocal bool
	// local is this cluster's node addresses.
	local map[netip.Addr]bool
}

// validateService checks every instance of an ExportedService (after
// decodeResource's structural checks): a refusal names the instance and
// matches *importRefusal. It returns how many reserved meta keys
// importRequest will strip.
func validateService(svc *pbpeerstream.ExportedService, c importChecks) (int, error) {
	stripped := 0
	for _, in := range svc.GetInstances() {
		n, err := validateInstance(in, c)
		if err != nil {
			return 0, fmt.Errorf("exported service %s: instance %s: %w", shortID(svc.GetName()), shortID(in.InstanceID()), err)
		}
		stripped += n
	}
	return stripped, nil
}

// validateInstance checks one instance's SNI, SPIFFE IDs, gateway address
// and meta; it returns the number of reserved meta keys it carries.
func validateInstance(in *pbpeerstream.ServiceInstance, c importChecks) (int, error) {
	if (in.GetSni() != "" || len(in.GetSpiffeIds()) > 0) && c.peerTD == "" {
		return 0, invalidErr(refuseNoBundle, "the peer's trust domain is not known yet: send the trust bundle before services with SNI or SPIFFE IDs")
	}
	if sni := in.GetSni(); sni != "" {
		if err := identity.ValidateDNSName(sni); err != nil {
			return 0, invalidErr(refuseSNI, "SNI %s: %v", shortID(sni), err)
		}
		if !strings.HasSuffix(sni, "."+c.peerTD) {
			return 0, invalidErr(refuseSNI, "SNI %s is not under the peer's trust domain %q", shortID(sni), c.peerTD)
		}
	}
	if len(in.GetSpiffeIds()) > maxImportSPIFFEIDs {
		return 0, invalidErr(refuseSPIFFEID, "%d SPIFFE IDs, more than %d", len(in.GetSpiffeIds()), maxImportSPIFFEIDs)
	}
	for _, s := range in.GetSpiffeIds() {
		if len(s) > maxImportSPIFFEIDLen {
			return 0, invalidErr(refuseSPIFFEID, "SPIFFE ID %s is longer than %d bytes", shortID(s), maxImportSPIFFEIDLen)
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			return 0, invalidErr(refuseSPIFFEID, "SPIFFE ID %s: %v", shortID(s), err)
		}
		if id.TrustDomain().Name() != c.peerTD {
			return 0, invalidErr(refuseSPIFFEID, "SPIFFE ID %s is not in the peer's trust domain %q", shortID(s), c.peerTD)
		}
	}
	if err := checkGateway(in.GetGatewayAddress(), c); err != nil {
		return 0, err
	}
	return checkImportMeta(in.GetMeta())
}

// checkGateway accepts an empty gateway address (the instance is not
// dialled) or an IP literal that is not local, unless local ones are
// allowed.
func checkGateway(addr string, c importChecks) error {
	if addr == "" {
		return nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return invalidErr(refuseGateway, "gateway address %s is not an IP address", shortID(addr))
	}
	if c.allowLocal {
		return nil
	}
	ip = ip.Unmap()
	var what string
	switch {
	case ip.IsLoopback():
		what = "loopback"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		what = "link-local"
	case ip.IsUnspecified():
		what = "unspecified"
	case ip.IsMulticast():
		what = "multicast"
	case c.local[ip]:
		what = "one of this cluster's node addresses"
	default:
		return nil
	}
	return invalidErr(refuseGateway, "gateway address %s is %s (allowed only with -peering-allow-local-gateways)", ip, what)
}

// checkImportMeta applies Consul's meta limits to the keys kept; keys with
// the reserved prefix are counted, not checked: importRequest strips them.
func checkImportMeta(meta map[string]string) (int, error) {
	if len(meta) > maxImportMetaPairs {
		return 0, invalidErr(refuseMeta, "%d meta pairs, more than %d", len(meta), maxImportMetaPairs)
	}
	reserved := 0
	for k, v := range meta {
		if reservedMetaKey(k) {
			reserved++
			continue
		}
		switch {
		case k == "" || len(k) > maxImportMetaKey:
			return 0, invalidErr(refuseMeta, "meta key %s: want 1 to %d bytes", shortID(k), maxImportMetaKey)
		case strings.IndexFunc(k, func(r rune) bool { return !metaKeyRune(r) }) >= 0:
			return 0, invalidErr(refuseMeta, "meta key %s: only letters, digits, '-' and '_'", shortID(k))
		case len(v) > maxImportMetaValue:
			return 0, invalidErr(refuseMeta, "meta value of %s is longer than %d bytes", shortID(k), maxImportMetaValue)
		}
	}
	return reserved, nil
}

func metaKeyRune(r rune) bool {
	return r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// reservedMetaKey reports whether k has a local meaning (any case).
func reservedMetaKey(k string) bool {
	return len(k) >= len(state.ReservedMetaPrefix) && strings.EqualFold(k[:len(state.ReservedMetaPrefix)], state.ReservedMetaPrefix)
}

// withoutReservedMeta copies meta without the keys of local meaning: the
// exporter does not send them (the importer would strip them).
func withoutReservedMeta(meta map[string]string) map[string]string {
	if meta == nil {
		return nil
	}
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		if !reservedMetaKey(k) {
			out[k] = v
		}
	}
	return out
}

// refusalCode is the NACK code of a refused import.
func refusalCode(err error) codes.Code {
	var r *importRefusal
	switch {
	case !errors.As(err, &r):
		return codes.InvalidArgument
	case r.quota != "":
		return codes.ResourceExhausted
	case r.reason == refuseNoBundle:
		return codes.FailedPrecondition
	}
	return codes.InvalidArgument
}

// localAddrs returns this cluster's node addresses (and their tagged
// addresses), which a peer's gateway must not claim.
func localAddrs(st *state.Store) (map[netip.Addr]bool, error) {
	_, nodes, err := st.Nodes(nil, "")
	if err != nil {
		return nil, fmt.Errorf("list this cluster's nodes: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, n := range nodes {
		if ip, err := netip.ParseAddr(n.Address); err == nil {
			out[ip.Unmap()] = true
		}
		for _, a := range n.TaggedAddresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				out[ip.Unmap()] = true
			}
		}
	}
	return out, nil
}

// checkBundleTrustDomain refuses a trust bundle from the peering selfID
// (pinned: its trust domain so far, "" if none yet) that claims this
// cluster's trust domain, a trust domain other than the pinned one, or the
// trust domain of another peering, or whose roots name another one.
func (s *Server) checkBundleTrustDomain(st *state.Store, selfID, pinned string, b *pbpeerstream.TrustBundle) error {
	claimed := b.GetTrustDomain()
	own, err := s.trustDomain()
	if err != nil {
		return fmt.Errorf("read this cluster's trust domain: %w", err)
	}
	switch {
	case strings.EqualFold(claimed, own.Name()):
		return invalidErr(refuseTrustDomain, "trust bundle claims this cluster's own trust domain %q", claimed)
	case pinned != "" && claimed != pinned:
		return invalidErr(refuseTrustDomain, "trust bundle claims trust domain %q, but the peering's is %q (pinned at establishment): delete and re-establish the peering to change it", shortTD(claimed), pinned)
	}
	if other, err := peeringWithTrustDomain(st, claimed, selfID); err != nil {
		return err
	} else if other != "" {
		return invalidErr(refuseTrustDomain, "trust bundle claims trust domain %q, which is peering %q's", shortTD(claimed), other)
	}
	for _, pem := range b.GetRootPems() {
		certs, err := identity.ParseCertsPEM(pem)
		if err != nil {
			return invalidErr(refuseTrustDomain, "trust bundle root: %v", err)
		}
		for _, c := range certs {
			for _, u := range c.URIs {
				if u.Scheme == "spiffe" && !strings.EqualFold(u.Host, claimed) {
					return invalidErr(refuseTrustDomain, "trust bundle for %q holds a root of trust domain %q", shortTD(claimed), shortTD(u.Host))
				}
			}
		}
	}
	return nil
}

// peeringWithTrustDomain returns the name of a live peering other than
// exceptID whose peer has trust domain td, or "".
func peeringWithTrustDomain(st *state.Store, td, exceptID string) (string, error) {
	_, rows, err := st.Peerings(nil)
	if err != nil {
		return "", fmt.Errorf("list peerings: %w", err)
	}
	for _, p := range rows {
		if p.ID == exceptID || p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
			continue
		}
		if p.PeerTrustDomain != "" && strings.EqualFold(p.PeerTrustDomain, td) {
			return p.Name, nil
		}
	}
	return "", nil
}

// tokenTrustDomain is the trust domain a token's acceptor claims: its
// TrustDomain, else the one its ServerName ends in (Consul's tokens).
func tokenTrustDomain(tok *Token) string {
	if tok.TrustDomain != "" {
		return tok.TrustDomain
	}
	if _, rest, ok := strings.Cut(tok.ServerName, ".peering."); ok {
		return rest
	}
	return ""
}

// checkTokenTrustDomain refuses a token whose acceptor claims the trust
// domain of a peering other than exceptID (the one being re-established).
func checkTokenTrustDomain(st *state.Store, tok *Token, exceptID string) error {
	td := tokenTrustDomain(tok)
	if td == "" {
		return nil
	}
	other, err := peeringWithTrustDomain(st, td, exceptID)
	if err != nil || other == "" {
		return err
	}
	return conflict("cannot establish a peering with trust domain %q: peering %q already has that trust domain; one cluster is peered once", td, other)
}

// shortTD shortens a trust domain from the peer for a message.
func shortTD(td string) string {
	if len(td) > 64 {
		return td[:64] + "..."
	}
	return td
}
