package dataplane

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPlanPeerIDs(t *testing.T) {
	long := strings.Repeat("x", maxPeerName+1)
	tests := []struct {
		name        string
		have        map[string]uint32
		want        []string
		ids         map[string]uint32
		add         map[string]uint32
		release     map[string]uint32
		refusedKeys []string
	}{
		{
			name: "empty registry numbers in name order",
			want: []string{"gamma", "alpha", "beta", "alpha"},
			ids:  map[string]uint32{"alpha": 1, "beta": 2, "gamma": 3},
			add:  map[string]uint32{"alpha": 1, "beta": 2, "gamma": 3},
		},
		{
			name: "known peers keep their ids; a new one sorting first does not take them",
			have: map[string]uint32{"beta": 1, "gamma": 2},
			want: []string{"aardvark", "beta", "gamma"},
			ids:  map[string]uint32{"aardvark": 3, "beta": 1, "gamma": 2},
			add:  map[string]uint32{"aardvark": 3},
		},
		{
			name:    "a removed peer is released and its id not reused in the same sync",
			have:    map[string]uint32{"alpha": 1, "beta": 2},
			want:    []string{"alpha", "delta"},
			ids:     map[string]uint32{"alpha": 1, "delta": 3},
			add:     map[string]uint32{"delta": 3},
			release: map[string]uint32{"beta": 2},
		},
		{
			name: "the lowest free id is reused once released",
			have: map[string]uint32{"alpha": 1, "delta": 3},
			want: []string{"alpha", "delta", "epsilon"},
			ids:  map[string]uint32{"alpha": 1, "delta": 3, "epsilon": 2},
			add:  map[string]uint32{"epsilon": 2},
		},
		{
			name:        "names the registry cannot hold are refused",
			want:        []string{"", long, "ok"},
			ids:         map[string]uint32{"ok": 1},
			add:         map[string]uint32{"ok": 1},
			refusedKeys: []string{"", long},
		},
		{
			name:    "nothing wanted releases everything",
			have:    map[string]uint32{"alpha": 1, "beta": 2},
			release: map[string]uint32{"alpha": 1, "beta": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planPeerIDs(tt.have, tt.want)
			for _, c := range []struct {
				what      string
				got, want map[string]uint32
			}{{"ids", p.ids, tt.ids}, {"add", p.add, tt.add}, {"release", p.release, tt.release}} {
				if len(c.got) != len(c.want) || !maps.Equal(c.got, c.want) {
					t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
				}
			}
			if got := slices.Sorted(maps.Keys(p.refused)); !slices.Equal(got, tt.refusedKeys) {
				t.Errorf("refused: got %q, want %q", got, tt.refusedKeys)
			}
		})
	}
}

func TestPlanPeerIDsFull(t *testing.T) {
	have := map[string]uint32{}
	for i := range maxPeers {
		have[string(rune('a'+i%26))+strings.Repeat("z", i/26)] = uint32(i + 1)
	}
	want := slices.Collect(maps.Keys(have))
	p := planPeerIDs(have, append(want, "one-too-many"))
	if len(p.ids) != maxPeers || len(p.add) != 0 {
		t.Fatalf("got %d ids and %d new, want %d and 0", len(p.ids), len(p.add), maxPeers)
	}
	if err := p.refused["one-too-many"]; err == nil || !strings.Contains(err.Error(), "no free peer id") {
		t.Errorf("refused: got %v, want no free peer id", err)
	}
}

func TestDesiredWantedPeers(t *testing.T) {
	d := Desired{
		VIPs:      map[netip.Addr]VIPTarget{netip.MustParseAddr("240.0.0.1"): {Peer: "b", Service: "web"}},
		PeerAddrs: map[netip.Addr]string{netip.MustParseAddr("10.0.0.1"): "c"},
		Peers:     []string{"a", "b"},
	}
	if got, want := d.wantedPeers(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSyncError(t *testing.T) {
	full := errors.New("map full")
	var e SyncError
	if e.orNil() != nil {
		t.Fatal("an empty SyncError is not nil")
	}
	e.add(SyncVIPs, nil)
	if e.orNil() != nil {
		t.Fatal("adding nil made an error")
	}
	e.add(SyncVIPs, full)
	e.add(SyncPeerAddrs, errors.New("unmap 10.0.0.1: busy"))
	err := e.orNil()
	if !errors.Is(err, full) {
		t.Errorf("errors.Is(%v, full) = false", err)
	}
	if got, want := err.Error(), "sync peer_addresses: unmap 10.0.0.1: busy; sync virtual_ips: map full"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var se *SyncError
	if !errors.As(err, &se) || len(se.Maps) != 2 {
		t.Errorf("errors.As: got %+v", se)
	}
}

func TestServiceIDStable(t *testing.T) {
	// FNV-1a of "billing" (computed independently): the same on every node
	// and run.
	if got, want := serviceID("billing"), uint32(0x417000dc); got != want {
		t.Errorf("got %#x, want %#x", got, want)
	}
	if serviceID("billing") == serviceID("web") {
		t.Error("billing and web hash alike")
	}
}
