package httpapi

import (
	"net/http"
)

func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) (any, error) {
	if !s.cluster.IsServer() {
		return nil, s.relay(w, r, true)
	}
	return s.cluster.Leader(), nil
}

func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) (any, error) {
	if !s.cluster.IsServer() {
		return nil, s.relay(w, r, true)
	}
	peers, err := s.cluster.Peers()
	if err != nil {
		return nil, err
	}
	if peers == nil {
		peers = []string{}
	}
	return peers, nil
}
