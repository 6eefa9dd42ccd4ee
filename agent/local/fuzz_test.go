package local

import (
	"encoding/json"
	"testing"
)

// FuzzServiceRegistration feeds arbitrary bodies to the registration decoder:
// it must never panic, and whatever it accepts must turn into a service and
// survive a JSON round trip unchanged in meaning.
func FuzzServiceRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"Name":"web","Port":8080,"Tags":["v1"],"Meta":{"version":"1"}}`,
		`{"ID":"web-1","Name":"web","Check":{"TTL":"30s"}}`,
		`{"name":"web","checks":[{"http":"http://127.0.0.1:8080/health","interval":"10s"},{"tcp":"127.0.0.1:8080","interval":"5s"}]}`,
		`{"Name":"web","Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationPeer":"east","DestinationName":"billing","LocalBindPort":9191}]}}}}`,
		`{"Kind":"connect-proxy","Name":"web-proxy","Proxy":{"DestinationServiceName":"web","Upstreams":[]}}`,
		`{"Name":"web","Port":"abc"}`,
		`{"Name":"web","Weights":{"Passing":0}}`,
		`{"Name":"", "Port": -1}`,
		`[]`, `null`, `{"Name":"web","Check":{"TTL":"30s","HTTP":"http://x"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		def, err := DecodeServiceDefinition(data)
		if err != nil {
			return
		}
		svc, _, err := ServiceFromDefinition(def)
		if err != nil {
			t.Fatalf("accepted definition failed conversion: %v", err)
		}
		if svc.ID == "" || svc.Service == "" {
			t.Fatalf("accepted definition has no ID or name: %+v", svc)
		}
		b, err := json.Marshal(def)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeServiceDefinition(b); err != nil {
			t.Fatalf("re-encoded definition refused: %v\n%s", err, b)
		}
	})
}
