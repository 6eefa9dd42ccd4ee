package httpapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/acl"
)

// keyringResponse is Consul's KeyringResponse: how many of the NumNodes
// members that answered hold each key, and have it as primary. Messages
// holds the errors by node. Nodes, peerd's addition, is every member's own
// answer.
type keyringResponse struct {
	WAN         bool
	Datacenter  string
	Segment     string
	Messages    map[string]string `json:",omitempty"`
	Keys        map[string]int
	PrimaryKeys map[string]int
	NumNodes    int
	Nodes       []catalog.KeyringResult
}

func (s *Server) keyringResponse(results []catalog.KeyringResult) keyringResponse {
	out := keyringResponse{Datacenter: s.cluster.Config().Datacenter, Keys: map[string]int{}, PrimaryKeys: map[string]int{}, Nodes: results}
	for _, r := range results {
		if r.Error != "" {
			if out.Messages == nil {
				out.Messages = map[string]string{}
			}
			out.Messages[r.Node] = r.Error
		}
		if len(r.Keys) == 0 {
			continue // the member did not answer
		}
		out.NumNodes++
		for _, k := range r.Keys {
			out.Keys[k]++
		}
		out.PrimaryKeys[r.PrimaryKey]++
	}
	return out
}

// keyringList is GET /v1/operator/keyring: every live member's keys.
func (s *Server) keyringList(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceKeyring, "", acl.AccessRead); err != nil {
		return nil, err
	}
	results, err := s.cluster.Keyring(r.Context(), catalog.KeyringList, nil)
	if err != nil {
		return nil, keyringError(err)
	}
	return []keyringResponse{s.keyringResponse(results)}, nil
}

// keyringOp is POST (install), PUT (use) and DELETE (remove) of
// /v1/operator/keyring with the body {"Key": "<base64>"}, applied to every
// live member. It fails (500, naming each node and its error) unless every
// member applied it; on success it answers the keyrings as they are now.
func (s *Server) keyringOp(op catalog.KeyringOp) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if _, err := s.require(r, acl.ResourceKeyring, "", acl.AccessWrite); err != nil {
			return nil, err
		}
		var body struct{ Key string }
		if err := decodeBody(r, &body); err != nil {
			return nil, err
		}
		if body.Key == "" {
			return nil, errBadRequest(`missing the key: send {"Key": "<base64 key>"} (generate one with peerd keygen)`)
		}
		key, err := base64.StdEncoding.DecodeString(body.Key)
		if err != nil {
			return nil, errBadRequest("the key is not base64: %v (generate one with peerd keygen)", err)
		}
		results, err := s.cluster.Keyring(r.Context(), op, key)
		if err != nil {
			return nil, keyringError(err)
		}
		resp := s.keyringResponse(results)
		if len(resp.Messages) > 0 {
			var lines []string
			for _, res := range results {
				if res.Error != "" {
					lines = append(lines, fmt.Sprintf("%s: %s", res.Node, res.Error))
				}
			}
			return nil, &httpError{code: http.StatusInternalServerError,
				msg: fmt.Sprintf("keyring %s failed on %d of %d nodes (the others applied it; retry once they are fixed):\n%s",
					op, len(lines), len(results), strings.Join(lines, "\n"))}
		}
		return []keyringResponse{resp}, nil
	}
}

// keyringError maps the refusals that stop a keyring operation before it is
// sent to 400.
func keyringError(err error) error {
	if errors.Is(err, catalog.ErrShutdown) {
		return err
	}
	return errBadRequest("%v", err)
}
