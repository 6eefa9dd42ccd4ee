package identity

import (
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzParseServiceID: any string that is a SPIFFE ID either is not a service
// ID, or parses into names that format back into the same string.
func FuzzParseServiceID(f *testing.F) {
	for _, s := range []string{
		"spiffe://5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab.peerd/ns/default/dc/dc1/svc/web",
		"spiffe://abc.consul/ap/part/ns/ns1/dc/east/svc/db",
		"spiffe://td/ns/a/dc/b/svc/c/d",
		"spiffe://td/ap/ns/a/dc/b/svc/c",
		"spiffe://td/gateway/mesh/dc/dc1",
		"spiffe://td",
		"spiffe://td/ns//dc/b/svc/c",
		"spiffe://TD/ns/a/dc/b/svc/c",
		"http://td/ns/a/dc/b/svc/c",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		si, err := ParseServiceID(id)
		if err != nil {
			if !errors.Is(err, ErrNotServiceID) {
				t.Fatalf("ParseServiceID(%q): got %v, want ErrNotServiceID", s, err)
			}
			return
		}
		back, err := si.ID()
		if err != nil {
			t.Fatalf("ParseServiceID(%q) = %+v, whose ID fails: %v", s, si, err)
		}
		if back.String() != s {
			t.Fatalf("ParseServiceID(%q).ID() = %q", s, back)
		}
		if si.Partition == "" {
			back, err := ServiceID(si.TrustDomain, si.Namespace, si.Datacenter, si.Service)
			if err != nil || back.String() != s {
				t.Fatalf("ServiceID(%+v) = %q, %v; want %q", si, back, err, s)
			}
		}
	})
}
