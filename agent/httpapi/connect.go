package httpapi

import (
	"net/http"
	"time"

	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/identity"
)

// caRootJSON is one root of GET /v1/connect/ca/roots (api.CARoot).
type caRootJSON struct {
	ID                string
	Name              string
	SerialNumber      uint64
	SigningKeyID      string
	NotBefore         time.Time
	NotAfter          time.Time
	RootCert          string
	IntermediateCerts []string `json:",omitempty"`
	Active            bool
	PrivateKeyType    string
	PrivateKeyBits    int
	CreateIndex       uint64
	ModifyIndex       uint64
}

// caRootListJSON is the body of GET /v1/connect/ca/roots (api.CARootList).
type caRootListJSON struct {
	ActiveRootID string
	TrustDomain  string
	Roots        []caRootJSON
}

// caRoots is GET /v1/connect/ca/roots: this cluster's CA roots, without
// keys, the active one first. Client nodes answer from their mirrored view.
func (s *Server) caRoots(w http.ResponseWriter, r *http.Request) (any, error) {
	idx, roots, err := s.cluster.View().CARoots(nil)
	if err != nil {
		return nil, err
	}
	out := caRootListJSON{Roots: []caRootJSON{}}
	for _, root := range roots {
		cr := caRootJSON{ID: root.ID, Name: "peerd CA " + shortID(root.ID), RootCert: root.CertPEM, Active: root.Active,
			SigningKeyID: root.ID, PrivateKeyType: "ec", PrivateKeyBits: 256,
			CreateIndex: root.CreateIndex, ModifyIndex: root.ModifyIndex}
		if cert, err := identity.ParseCertPEM(root.CertPEM); err == nil {
			cr.NotBefore, cr.NotAfter = cert.NotBefore.UTC(), cert.NotAfter.UTC()
			if cert.SerialNumber.IsUint64() {
				cr.SerialNumber = cert.SerialNumber.Uint64()
			}
		}
		if root.CrossSignedPEM != "" {
			cr.IntermediateCerts = []string{root.CrossSignedPEM}
		}
		if root.Active {
			out.ActiveRootID, out.TrustDomain = root.ID, root.TrustDomain
		}
		out.Roots = append(out.Roots, cr)
	}
	s.setMeta(w, max(idx, 1))
	return out, nil
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

type caRotateResponse struct {
	ActiveRootID string
}

// caRotate is POST /v1/connect/ca/rotate (peerd's; Consul rotates through
// PUT /v1/connect/ca/configuration): a new root, cross-signed by the
// current one. Leaves are renewed by every node's terminator within
// seconds; the new roots reach peers with the trust bundle.
func (s *Server) caRotate(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	id, err := p.RotateCA(r.Context())
	if err != nil {
		return nil, peeringError(err)
	}
	return caRotateResponse{ActiveRootID: id}, nil
}

// agentDataplane is GET /v1/agent/dataplane (peerd's): this node's eBPF
// layers — loaded or not and why, attach modes, kernel, map occupancy and
// counters — or {"Enabled": false} when the node runs no dataplane — and,
// when workload namespaces are managed, "Workloads": each namespace
// (cookie, inode, pid, owner service, listeners).
func (s *Server) agentDataplane(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.requireAgent(r, acl.AccessRead); err != nil {
		return nil, err
	}
	if s.dataplaneStatus != nil {
		if st, ok := s.dataplaneStatus(); ok {
			out := map[string]any{"Enabled": true, "Status": st}
			if s.workloadNamespaces != nil {
				out["Workloads"] = s.workloadNamespaces()
			}
			return out, nil
		}
	}
	return map[string]any{"Enabled": false}, nil
}
