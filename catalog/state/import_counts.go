package state

import "fmt"

// ImportedInstanceCounts returns how many instances of each service are
// imported from peer (a peer name; "" counts the local services). It reads
// one index range, without watches: the peering importer calls it once per
// stream to start its quota accounting.
func (s *Store) ImportedInstanceCounts(peer string) (map[string]int, error) {
	tx := s.read(nil)
	defer tx.Abort()
	it, err := tx.Get(tableServices, "id_prefix", peer)
	if err != nil {
		return nil, fmt.Errorf("count services of %q: %w", peer, err)
	}
	out := map[string]int{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if r.PeerName != peer {
			continue
		}
		out[r.Service.Service]++
	}
	return out, nil
}
