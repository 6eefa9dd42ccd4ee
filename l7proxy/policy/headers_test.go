package policy

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
)

// envoyApply applies levels the way Envoy applies Consul's modifiers: level
// by level, each as Remove, then Add, then Set.
func envoyApply(h http.Header, levels ...*configentry.HTTPHeaderModifiers) {
	for _, m := range levels {
		if m == nil {
			continue
		}
		for _, k := range m.Remove {
			h.Del(k)
		}
		for k, v := range m.Add {
			h.Add(k, v)
		}
		for k, v := range m.Set {
			h.Set(k, v)
		}
	}
}

func TestComposeHeaders(t *testing.T) {
	mods := func(add, set map[string]string, remove ...string) *configentry.HTTPHeaderModifiers {
		return &configentry.HTTPHeaderModifiers{Add: add, Set: set, Remove: remove}
	}
	kv := func(pairs ...string) map[string]string {
		m := make(map[string]string)
		for i := 0; i+1 < len(pairs); i += 2 {
			m[pairs[i]] = pairs[i+1]
		}
		return m
	}
	tests := []struct {
		name          string
		first, second *configentry.HTTPHeaderModifiers
		want          http.Header
	}{
		{"both nil", nil, nil, http.Header{"X-In": {"1"}}},
		{"set in both: second wins", mods(nil, kv("X-A", "1")), mods(nil, kv("x-a", "2")), http.Header{"X-In": {"1"}, "X-A": {"2"}}},
		{"set then add: both values", mods(nil, kv("X-A", "1")), mods(kv("X-A", "2"), nil), http.Header{"X-In": {"1"}, "X-A": {"1", "2"}}},
		{"add then set: set wins", mods(kv("X-A", "1"), nil), mods(nil, kv("X-A", "2")), http.Header{"X-In": {"1"}, "X-A": {"2"}}},
		{"add in both: joined", mods(kv("X-A", "1"), nil), mods(kv("X-A", "2"), nil), http.Header{"X-In": {"1"}, "X-A": {"1,2"}}},
		{"second removes what first set", mods(kv("X-B", "1"), kv("X-A", "1")), mods(nil, nil, "x-a", "X-B"), http.Header{"X-In": {"1"}}},
		{"first removes, second adds", mods(nil, nil, "X-In"), mods(kv("X-In", "2"), nil), http.Header{"X-In": {"2"}}},
		{"one level with add and set of a header: set wins", mods(kv("X-A", "1"), kv("X-A", "2")), nil, http.Header{"X-In": {"1"}, "X-A": {"2"}}},
		{"remove then add in one level", nil, mods(kv("X-In", "2"), nil, "X-In"), http.Header{"X-In": {"2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := http.Header{"X-In": {"1"}}
			ApplyHeaderModifiers(got, composeHeaders(tt.first, tt.second))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			// Where no header is added twice, the result is Envoy's.
			envoy := http.Header{"X-In": {"1"}}
			envoyApply(envoy, tt.first, tt.second)
			if tt.name != "add in both: joined" && !reflect.DeepEqual(got, envoy) {
				t.Errorf("got %v, Envoy gives %v", got, envoy)
			}
		})
	}
}

func TestComposeHeadersSharesCanonicalInput(t *testing.T) {
	m := &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-A": "1"}}
	if composeHeaders(nil, m) != m || composeHeaders(m, &configentry.HTTPHeaderModifiers{}) != m {
		t.Error("a lone canonical modifier was copied")
	}
	if composeHeaders(nil, &configentry.HTTPHeaderModifiers{}) != nil {
		t.Error("empty modifiers did not compose to nil")
	}
	ApplyHeaderModifiers(nil, m) // no panic
	ApplyHeaderModifiers(http.Header{}, nil)
}
