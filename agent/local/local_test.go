package local

import (
	"fmt"
	"strings"
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

func TestServiceFromDefinition(t *testing.T) {
	tests := []struct {
		name    string
		def     state.ServiceDefinition
		wantErr string
		wantID  string
	}{
		{"id defaults to name", state.ServiceDefinition{Name: "web"}, "", "web"},
		{"explicit id", state.ServiceDefinition{ID: "web-1", Name: "web"}, "", "web-1"},
		{"missing name", state.ServiceDefinition{Port: 80}, "Name", ""},
		{"bad name", state.ServiceDefinition{Name: "web/1"}, "Name", ""},
		{"port out of range", state.ServiceDefinition{Name: "web", Port: 70000}, "Port", ""},
		{"id with slash", state.ServiceDefinition{ID: "a/b", Name: "web"}, "ID", ""},
		{"zero passing weight", state.ServiceDefinition{Name: "web", Weights: &state.Weights{Passing: 0, Warning: 1}}, "Weights.Passing", ""},
		{"proxy without destination", state.ServiceDefinition{Kind: "connect-proxy", Name: "web-proxy", Port: 21000}, "DestinationServiceName", ""},
		{"proxy without port", state.ServiceDefinition{Kind: "connect-proxy", Name: "web-proxy",
			Proxy: &state.ProxyConfig{DestinationServiceName: "web"}}, "Port", ""},
		{"proxy ok", state.ServiceDefinition{Kind: "connect-proxy", Name: "web-proxy", Port: 21000,
			Proxy: &state.ProxyConfig{DestinationServiceName: "web"}}, "", "web-proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, _, err := ServiceFromDefinition(&tt.def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if svc.ID != tt.wantID {
				t.Fatalf("got ID %q, want %q", svc.ID, tt.wantID)
			}
		})
	}
}

func TestServiceChecksGetConsulIDs(t *testing.T) {
	one := &state.CheckType{TTL: 1}
	_, defs, err := ServiceFromDefinition(&state.ServiceDefinition{Name: "web", Check: one})
	if err != nil || len(defs) != 1 || defs[0].CheckID != "service:web" {
		t.Fatalf("got %+v (%v), want one check service:web", defs, err)
	}
	_, defs, err = ServiceFromDefinition(&state.ServiceDefinition{Name: "web", Checks: []*state.CheckType{one, one}})
	if err != nil || len(defs) != 2 || defs[0].CheckID != "service:web:1" || defs[1].CheckID != "service:web:2" {
		t.Fatalf("got %+v (%v), want service:web:1 and service:web:2", defs, err)
	}
}

// TestUnsupportedCheckKindsSayWhy checks that Consul's check kinds peerd
// does not run are refused with the kind and the reason, not as a typo
// ("unknown field").
func TestUnsupportedCheckKindsSayWhy(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"script", `{"Name":"web","Check":{"Args":["/bin/check"],"Interval":"10s"}}`, `Check: "Args": script checks are not supported`},
		{"script, snake case", `{"Name":"web","Checks":[{"script_args":["x"]}]}`, `Checks[0]: "script_args": script checks are not supported`},
		{"docker", `{"Name":"web","Check":{"DockerContainerID":"c1"}}`, "Docker checks are not supported"},
		{"grpc", `{"Name":"web","Check":{"GRPC":"127.0.0.1:9000","Interval":"10s"}}`, "gRPC checks are not supported"},
		{"h2ping", `{"Name":"web","Check":{"H2PING":"127.0.0.1:9000"}}`, "H2PING checks are not supported"},
		{"alias", `{"Name":"web","Check":{"AliasService":"db"}}`, "alias checks are not supported"},
		{"a typo is still a typo", `{"Name":"web","Check":{"HTTPP":"http://x"}}`, `unknown field "HTTPP"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeServiceDefinition([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(tt.want, "not supported") && !strings.Contains(err.Error(), "TTL, HTTP and TCP checks only") {
				t.Fatalf("got %v, want it to say which checks peerd runs", err)
			}
		})
	}
}

// A registered service name is held to the same limit as a config entry's.
func TestServiceNameLength(t *testing.T) {
	longest := strings.Repeat("s", configentry.MaxServiceNameLength)
	tests := []struct {
		name    string
		wantErr bool
	}{
		{longest, false},
		{longest + "s", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(len(tt.name)), func(t *testing.T) {
			err := ValidateServiceName(tt.name)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("got %v, want an error: %v", err, tt.wantErr)
			}
			_, _, err = ServiceFromDefinition(&state.ServiceDefinition{Name: tt.name})
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("registration: got %v, want an error: %v", err, tt.wantErr)
			}
		})
	}
}
