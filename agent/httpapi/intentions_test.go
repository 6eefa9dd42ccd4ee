package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
)

// Intentions need Consul's permissions: intentions:read to read and
// intentions:write to write on the destination; lists drop what the token
// may not read; refusals are counted.
func TestIntentionsACL(t *testing.T) {
	n, logs := aclNode(t, map[string]string{
		"webw":  `service "web" { intentions = "write" }`,
		"webr":  `service "web" { policy = "read" }`,
		"other": `service "other" { intentions = "write" }`,
	}, nil)
	put := func(token, src, dst, body string) answer {
		return doToken(t, "PUT", n.url+"/v1/connect/intentions/exact?source="+src+"&destination="+dst, token, body)
	}
	if got := put("webw", "a", "web", `{"Action": "allow"}`); got.code != 200 || got.body != "true\n" {
		t.Fatalf("webw writes a => web: got %d %q, want 200 true", got.code, got.body)
	}
	if got := put("other", "a", "other", `{"Action": "deny"}`); got.code != 200 {
		t.Fatalf("other writes a => other: got %d %q", got.code, got.body)
	}
	tests := []struct {
		name, method, path, token string
		body                      string
		code                      int
		want                      string
	}{
		{"webw cannot write billing's", "PUT", "/v1/connect/intentions/exact?source=a&destination=billing", "webw", `{"Action": "allow"}`, 403,
			`lacks permission 'intention:write' on "billing"`},
		{"webr cannot write web's", "PUT", "/v1/connect/intentions/exact?source=b&destination=web", "webr", `{"Action": "allow"}`, 403,
			`lacks permission 'intention:write' on "web"`},
		{"webr cannot create", "POST", "/v1/connect/intentions", "webr", `{"SourceName": "b", "DestinationName": "web", "Action": "allow"}`, 403,
			`lacks permission 'intention:write' on "web"`},
		{"webr cannot delete", "DELETE", "/v1/connect/intentions/exact?source=a&destination=web", "webr", "", 403, "intention:write"},
		{"webr reads web's", "GET", "/v1/connect/intentions/exact?source=a&destination=web", "webr", "", 200, `"SourceName":"a"`},
		{"webr checks web", "GET", "/v1/connect/intentions/check?source=a&destination=web", "webr", "", 200, `{"Allowed":true}`},
		{"webr cannot check other", "GET", "/v1/connect/intentions/check?source=a&destination=other", "webr", "", 403, "intention:read"},
		{"webr cannot match other", "GET", "/v1/connect/intentions/match?by=destination&name=web&name=other", "webr", "", 403,
			`lacks permission 'intention:read' on "other"`},
		{"unknown token", "GET", "/v1/connect/intentions/x", "nope", "", 403, "ACL not found"},
		{"by ID, known token", "GET", "/v1/connect/intentions/x", "webr", "", 404, "have no IDs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := doToken(t, tt.method, n.url+tt.path, tt.token, tt.body)
			if got.code != tt.code || !strings.Contains(got.body, tt.want) {
				t.Errorf("got %d %q, want %d containing %q", got.code, got.body, tt.code, tt.want)
			}
		})
	}
	// The list drops other's intentions for webr, and says so.
	got := doToken(t, "GET", n.url+"/v1/connect/intentions", "webr", "")
	var list []intentionJSON
	if err := json.Unmarshal([]byte(got.body), &list); err != nil || len(list) != 1 || list[0].DestinationName != "web" {
		t.Fatalf("webr's list: got %q (%v), want web's intention only", got.body, err)
	}
	if got.header.Get(filteredHeader) != "true" {
		t.Errorf("webr's list: %s not set", filteredHeader)
	}
	if !strings.Contains(logs.String(), "ACL refused a request") {
		t.Error("refusals were not logged")
	}
}

// The request inputs are checked before anything is written, each error
// naming the parameter or field and the fix.
func TestIntentionBadInput(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	tests := []struct {
		name, method, path, body string
		want                     string
	}{
		{"no source", "PUT", "/v1/connect/intentions/exact?destination=web", `{"Action": "allow"}`, "missing source"},
		{"empty part", "PUT", "/v1/connect/intentions/exact?source=a//b&destination=web", `{"Action": "allow"}`, "empty part"},
		{"four parts", "GET", "/v1/connect/intentions/exact?source=a/b/c/d&destination=web", "", "at most 3 parts"},
		{"destination namespace", "GET", "/v1/connect/intentions/exact?source=a&destination=ns1/web", "", "no namespaces"},
		{"unknown field", "PUT", "/v1/connect/intentions/exact?source=a&destination=web", `{"Action": "allow", "Bogus": 1}`, "Bogus"},
		{"two objects", "PUT", "/v1/connect/intentions/exact?source=a&destination=web", `{"Action": "allow"} {}`, "data after"},
		{"ID set", "PUT", "/v1/connect/intentions/exact?source=a&destination=web", `{"ID": "x", "Action": "allow"}`, "ID must be empty"},
		{"no action", "PUT", "/v1/connect/intentions/exact?source=a&destination=web", `{}`, "Action"},
		{"peer wildcard", "PUT", "/v1/connect/intentions/exact?source=a&destination=web", `{"SourcePeer": "*", "Action": "allow"}`, "Peer"},
		{"L7 on a wildcard destination", "PUT", "/v1/connect/intentions/exact?source=a&destination=*",
			`{"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}`, "wildcarded destinations"},
		{"create without destination", "POST", "/v1/connect/intentions", `{"SourceName": "a", "Action": "allow"}`, "DestinationName is required"},
		{"check source type", "GET", "/v1/connect/intentions/check?source=a&destination=web&source-type=k8s", "", "source-type"},
		{"match without name", "GET", "/v1/connect/intentions/match?by=source", "", "missing name"},
		{"maintenance without enable", "PUT", "/v1/agent/maintenance", "", "Missing value for enable"},
		{"maintenance bad enable", "PUT", "/v1/agent/maintenance?enable=perhaps", "", "Invalid value for enable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := doToken(t, tt.method, n.url+tt.path, "", tt.body)
			if got.code != http.StatusBadRequest || !strings.Contains(got.body, tt.want) {
				t.Errorf("got %d %q, want 400 containing %q", got.code, got.body, tt.want)
			}
		})
	}
	if got := doToken(t, "GET", n.url+"/v1/connect/intentions", "", ""); got.body != "[]\n" {
		t.Errorf("nothing was to be written: got %q", got.body)
	}
}

// Concurrent writes to one destination's entry all land: the
// check-and-set retries instead of losing one.
func TestIntentionConcurrentUpserts(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	const writers = 8
	errs := make(chan string, writers)
	for i := range writers {
		go func() {
			src := "src" + string(rune('a'+i))
			got := doToken(t, "PUT", n.url+"/v1/connect/intentions/exact?source="+src+"&destination=web", "", `{"Action": "allow"}`)
			if got.code != 200 {
				errs <- src + ": " + got.body
				return
			}
			errs <- ""
		}()
	}
	for range writers {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	_, e, err := n.cluster.Store().ConfigEntry(nil, configentry.ServiceIntentions, "web")
	if err != nil || e == nil || len(e.(*configentry.ServiceIntentionsConfigEntry).Sources) != writers {
		t.Fatalf("web's entry: got %+v (%v), want %d sources", e, err, writers)
	}
}

// FuzzIntentionBody sends any body and source/destination to the write
// endpoints (PUT .../exact and POST /v1/connect/intentions). The handler
// must never panic nor answer 5xx for bad input; what it accepts must be a
// valid service-intentions entry that reads back with the action written.
func FuzzIntentionBody(f *testing.F) {
	for _, s := range []struct{ src, dst, body string }{
		{"web", "db", `{"Action": "allow"}`},
		{"web", "db", `{"Action": "DENY", "Description": "x"}`},
		{"*", "db", `{"Action": "deny"}`},
		{"ns/web", "db", `{"Action": "allow"}`},
		{"default/default/web", "db", `{"Action": "allow", "SourceType": "consul"}`},
		{"web", "*", `{"Action": "allow", "SourcePeer": "dc2"}`},
		{"web", "db", `{"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["get"]}}]}`},
		{"web", "db", `{"Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "("}}]}`},
		{"web", "db", `{"Action": "allow", "Meta": {"a": "b"}}`},
		{"web", "db", `{"SourceSamenessGroup": "g", "Action": "allow"}`},
		{"web", "db", `{"CreatedAt": "2020-01-01T00:00:00Z", "Hash": "AAE=", "Precedence": 3, "Action": "allow"}`},
		{"web", "db", `[]`},
		{"", "", `{`},
	} {
		f.Add(s.src, s.dst, s.body)
	}
	n := startPeeringNode(f, "n", "dc1", false)
	handler := n.srv.Handler()
	f.Fuzz(func(t *testing.T, src, dst, body string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		q := url.Values{"source": {src}, "destination": {dst}}.Encode()
		for _, target := range []struct{ method, path string }{
			{"PUT", "/v1/connect/intentions/exact?" + q},
			{"POST", "/v1/connect/intentions"},
		} {
			req := httptest.NewRequestWithContext(ctx, target.method, target.path, strings.NewReader(body))
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s %q: got %d %q, want a status below 500", target.method, target.path, body, rec.Code, rec.Body.String())
			}
			if rec.Code != http.StatusOK || target.method != "PUT" {
				continue
			}
			ixn, err := decodeIntentionBody([]byte(body))
			if err != nil {
				t.Fatalf("accepted a body it cannot decode: %q: %v", body, err)
			}
			_, e, err := n.cluster.Store().ConfigEntry(nil, configentry.ServiceIntentions, dst)
			if err != nil || e == nil {
				t.Fatalf("accepted %s => %s but no entry: %v", src, dst, err)
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("stored an invalid entry for %q: %v", body, err)
			}
			st, _ := parseIntentionTarget("source", src)
			ixn.SourceName, ixn.SourceNS, ixn.SourcePartition = st.name, st.namespace, st.partition
			want, err := sourceOf(ixn)
			if err != nil {
				t.Fatalf("accepted a body sourceOf refuses: %q: %v", body, err)
			}
			var found *configentry.SourceIntention
			for _, s := range e.(*configentry.ServiceIntentionsConfigEntry).Sources {
				if sameSource(s, want) {
					found = s
				}
			}
			if found == nil || !strings.EqualFold(string(found.Action), string(ixn.Action)) {
				t.Fatalf("accepted %s => %s %q, read back %+v", src, dst, body, found)
			}
		}
	})
}
