package decode

import (
	"bytes"
	"encoding/json"
	"testing"
)

var fuzzJSONSeeds = []string{
	`{"Kind":"k","Name":"web","Port":8080,"CreateIndex":3}`,
	`{"peer_name":"west","meta":{"Some_Key":"v"},"mesh_gateway":{"mode":"local"}}`,
	`{"Services":[{"Name":"web","Consumers":[{"peer_name":"west"},{"Peer":"east"}]}]}`,
	`{"Timeout":"10s","Interval":1000000000,"Created":"2024-01-02T03:04:05Z"}`,
	`{"Config":{"protocol":"http","n":1000,"nested":{"A_b":[1.5,true,null]}}}`,
	`{"Header":{"X-Foo":["a","b"]},"Subsets":{"v1":{"mode":"local"}}}`,
	`{"MeshGateway":[{"Mode":"remote"}],"Ptr":[{"Mode":"none"}],"Weight":33.33}`,
	`{"Port":1e3,"Retries":2.0,"Small":-128}`,
	`{"Timeout":-5,"Interval":-5}`,
	`[1,2,3]`,
	`{"Name":"a"} x`,
	``,
}

var fuzzHCLSeeds = []string{
	"Kind = \"exported-services\"\nname = \"default\"\nport = 8080\ntimeout = \"15s\"\nmeta = { k = \"v\" }\n",
	`Services = [{ Name = "web", Consumers = [{ Peer = "west" }, { peer_name = "east" }] }]`,
	"Services {\n  Name = \"web\"\n  Consumers {\n    Peer = \"west\"\n  }\n}\nmesh_gateway {\n  mode = \"local\"\n}\n",
	"Subsets \"v1\" { Mode = \"local\" }\nSubsets \"v2\" { Mode = \"remote\" }\n",
	"Config {\n  protocol = \"http\"\n  list = [1, \"a\", null, 1.5e3]\n}\n",
	"Port = 80 * 2\nName = \"web-${1 + 1}\"\n",
	"Name = <<EOT\nweb\nEOT\n",
	"Name = web\n",
	"Services = [\n  {\n    Name = \"web\"\n    Consumers { Peer = \"west\" }\n    Namespace = \"${1}\"\n  },\n]\nSubsets = { v1 { Mode = \"local\" } }\n",
	"Services = [{ Name = \"a\", Name = \"b\" }]\n",
	"Port = 1e999999\n",
	"",
}

// checkRoundTrip asserts that a successfully decoded value encodes to JSON and
// that the encoding decodes again to a value with the same encoding.
func checkRoundTrip(t *testing.T, got *testDoc) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("decoded value does not encode: %v (%+v)", err, got)
	}
	var again testDoc
	if err := JSON(b, &again); err != nil {
		t.Fatalf("re-encoded value %s does not decode: %v", b, err)
	}
	b2, err := json.Marshal(&again)
	if err != nil {
		t.Fatalf("decoded re-encoding does not encode: %v", err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the value:\n got %s\nwant %s", b2, b)
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range fuzzJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got testDoc
		if err := JSON(data, &got); err != nil {
			return
		}
		checkRoundTrip(t, &got)
		var m map[string]any
		if g, err := Generic(data, "f.json"); err == nil {
			if err := Into(g, &m); err != nil {
				t.Fatalf("Into(Generic(data)) into a map: %v", err)
			}
		}
	})
}

func FuzzHCL(f *testing.F) {
	for _, s := range fuzzHCLSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, gerr := Generic(data, "f.hcl")
		var got testDoc
		err := HCL(data, "f.hcl", &got)
		if looksLikeJSON(data) {
			return
		}
		if (gerr == nil) != (err == nil) {
			if err == nil {
				t.Fatalf("Generic failed (%v) but HCL succeeded", gerr)
			}
			// HCL may fail on types where Generic succeeds; that is fine.
		}
		if gerr == nil {
			if _, err := json.Marshal(g); err != nil {
				t.Fatalf("generic value does not encode: %v", err)
			}
		}
		if err != nil {
			return
		}
		checkRoundTrip(t, &got)
	})
}
