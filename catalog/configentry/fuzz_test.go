package configentry

import (
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, ex := range documentedExamples {
		f.Add([]byte(ex.hcl))
		f.Add([]byte(ex.json))
	}
	for _, e := range apiEntries() {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"Kind":"service-splitter","Name":"web","Splits":[{"Weight":33.333},{"Weight":66.667,"Service":"b"}]}`,
		`{"Kind":"service-intentions","Name":"*","Sources":[{"Name":"*","Action":"deny"},null]}`,
		`{"Kind":"service-defaults","Name":"web","UpstreamConfig":{"Overrides":[null]}}`,
		`{"kind":"exported-services","services":[{"name":"web","consumers":{"peer_name":"west"}}]}`,
		"Kind = \"proxy-defaults\"\nConfig { protocol = \"http\", n = 1e3 }\n",
		"Kind = \"service-resolver\"\nName = \"web\"\nSubsets \"v1\" { Filter = \"x\" }\n",
		`{"Kind":"mesh","Name":"mesh","TLS":{"Incoming":{"TLSMinVersion":"TLSv1_3"}}}`,
		`{"Kind":"nope"}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data, "fuzz")
		if err != nil {
			return
		}
		verr := e.Validate()
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("a decoded entry does not encode: %v", err)
		}
		// What is stored in the raft log reads back, whether or not the
		// entry is valid (Decode does not validate).
		again, err := DecodeKind(e.GetKind(), b)
		if err != nil {
			t.Fatalf("DecodeKind(%q, %s): got error %v, want nil (entry valid: %v)", e.GetKind(), b, err, verr == nil)
		}
		// Normalize is idempotent: the stored form normalizes to itself.
		again.Normalize()
		b2, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("decoding and normalizing the stored form changed it:\n got %s\nwant %s", b2, b)
		}
		// Validation depends only on the stored form.
		verr2 := again.Validate()
		if (verr == nil) != (verr2 == nil) || (verr != nil && verr.Error() != verr2.Error()) {
			t.Fatalf("Validate of the stored form %s: got %v, want %v", b, verr2, verr)
		}
	})
}
