package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadServiceFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		data    string
		want    string // the definitions as JSON
		wantErr string
	}{
		{
			name: "json service object",
			file: "web.json",
			data: `{"service": {"name": "web", "port": 8080, "tags": ["v1"]}}`,
			want: `[{"name": "web", "port": 8080, "tags": ["v1"]}]`,
		},
		{
			name: "json services list",
			file: "svcs.json",
			data: `{"services": [{"name": "web", "port": 80}, {"ID": "db-1", "Name": "db"}]}`,
			want: `[{"name": "web", "port": 80}, {"ID": "db-1", "Name": "db"}]`,
		},
		{
			name: "json bare definition",
			file: "bare.json",
			data: `{"Name": "web", "Port": 80, "Meta": {"team": "payments"}}`,
			want: `[{"Name": "web", "Port": 80, "Meta": {"team": "payments"}}]`,
		},
		{
			name: "json capitalised service key",
			file: "cap.json",
			data: `{"Service": {"Name": "web"}}`,
			want: `[{"Name": "web"}]`,
		},
		{
			name: "hcl service block",
			file: "web.hcl",
			data: `
service {
  name = "web"
  port = 8080
  tags = ["v1", "primary"]
  meta = {
    team = "payments"
  }
}
`,
			want: `[{"name": "web", "port": 8080, "tags": ["v1", "primary"], "meta": {"team": "payments"}}]`,
		},
		{
			name: "hcl nested block stays a list",
			file: "check.hcl",
			data: `
service {
  name = "web"
  check {
    http     = "http://localhost:8080/health"
    interval = "10s"
  }
}
`,
			want: `[{"name": "web", "check": [{"http": "http://localhost:8080/health", "interval": "10s"}]}]`,
		},
		{
			name: "hcl repeated services blocks",
			file: "svcs.hcl",
			data: `
services {
  name = "web"
}
services {
  id   = "db-1"
  name = "db"
}
`,
			want: `[{"name": "web"}, {"id": "db-1", "name": "db"}]`,
		},
		{
			name: "hcl service and services together",
			file: "both.hcl",
			data: `
service {
  name = "web"
}
services = [{ name = "db" }]
`,
			want: `[{"name": "web"}, {"name": "db"}]`,
		},
		{
			name: "hcl bare definition",
			file: "bare.hcl",
			data: `
name = "web"
port = 80
`,
			want: `[{"name": "web", "port": 80}]`,
		},
		{
			name:    "no definition",
			file:    "agent.hcl",
			data:    `datacenter = "dc1"`,
			wantErr: "no service definition found",
		},
		{
			name:    "definition without name",
			file:    "noname.json",
			data:    `{"services": [{"name": "web"}, {"port": 80}]}`,
			wantErr: "service definition 2 has no name",
		},
		{
			name:    "services not objects",
			file:    "bad.json",
			data:    `{"services": ["web"]}`,
			wantErr: "services: item 1 is a string, want an object",
		},
		{
			name:    "empty services list",
			file:    "empty.json",
			data:    `{"services": []}`,
			wantErr: "no service definition found",
		},
		{
			name:    "json syntax error names the file",
			file:    "broken.json",
			data:    `{"service": {"name": }`,
			wantErr: "broken.json",
		},
		{
			name:    "hcl syntax error names the file",
			file:    "broken.hcl",
			data:    "service {\n  name = \n}\n",
			wantErr: "broken.hcl",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			defs, err := loadServiceFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertSameJSON(t, defs, tt.want)
		})
	}
}

func TestLoadServiceFileMissing(t *testing.T) {
	_, err := loadServiceFile(filepath.Join(t.TempDir(), "nope.hcl"))
	if err == nil || !strings.Contains(err.Error(), "nope.hcl") {
		t.Errorf("got %v, want an error naming nope.hcl", err)
	}
}

// assertSameJSON fails unless got, encoded as JSON, equals the JSON
// document want, ignoring key order and spacing.
func assertSameJSON(t *testing.T, got any, want string) {
	t.Helper()
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, gotJSON, []byte(want)) {
		t.Errorf("got %s, want %s", gotJSON, want)
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var av, bv any
	if err := json.Unmarshal(a, &av); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &bv); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(av, bv)
}
