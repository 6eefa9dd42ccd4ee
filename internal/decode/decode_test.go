package decode

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testConsumer struct {
	Peer          string `json:",omitempty" alias:"peer_name"`
	Partition     string `json:",omitempty"`
	SamenessGroup string `json:",omitempty"`
}

type testService struct {
	Name      string
	Namespace string `json:",omitempty"`
	Consumers []testConsumer
}

type testIndex struct {
	CreateIndex uint64
	ModifyIndex uint64
}

type testGateway struct {
	Mode string `json:",omitempty"`
}

type testDoc struct {
	Kind        string
	Name        string
	PeerName    string            `json:",omitempty"`
	Port        int               `json:",omitempty"`
	Small       int8              `json:",omitempty"`
	Retries     uint32            `json:",omitempty"`
	Weight      float32           `json:",omitempty"`
	Enabled     bool              `json:",omitempty"`
	Timeout     Duration          `json:",omitempty"`
	Interval    DurationNanos     `json:",omitempty"`
	Created     *time.Time        `json:",omitempty"`
	Meta        map[string]string `json:",omitempty"`
	Config      map[string]any    `json:",omitempty"`
	Header      map[string][]string
	Services    []testService `json:",omitempty"`
	MeshGateway testGateway   `json:",omitempty"`
	Ptr         *testGateway  `json:",omitempty"`
	Subsets     map[string]testGateway
	Tags        []string `json:"tag_list,omitempty"`
	Ignored     string   `json:"-"`
	//lint:ignore U1000 present to show unexported fields are never decoded into
	hidden string
	testIndex
}

func TestJSON(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want testDoc
	}{
		{
			name: "canonical names",
			in:   `{"Kind":"k","Name":"web","Port":8080,"CreateIndex":3}`,
			want: testDoc{Kind: "k", Name: "web", Port: 8080, testIndex: testIndex{CreateIndex: 3}},
		},
		{
			name: "snake and lower case keys",
			in:   `{"peer_name":"west","meta":{"Some_Key":"v"},"mesh_gateway":{"mode":"local"},"create_index":7}`,
			want: testDoc{PeerName: "west", Meta: map[string]string{"Some_Key": "v"}, MeshGateway: testGateway{Mode: "local"}, testIndex: testIndex{CreateIndex: 7}},
		},
		{
			name: "json tag name",
			in:   `{"TagList":["a","b"]}`,
			want: testDoc{Tags: []string{"a", "b"}},
		},
		{
			name: "alias tag",
			in:   `{"Services":[{"Name":"web","Consumers":[{"peer_name":"west"},{"Peer":"east"}]}]}`,
			want: testDoc{Services: []testService{{Name: "web", Consumers: []testConsumer{{Peer: "west"}, {Peer: "east"}}}}},
		},
		{
			name: "durations as strings and numbers",
			in:   `{"Timeout":"10s","Interval":1000000000}`,
			want: testDoc{Timeout: Duration(10 * time.Second), Interval: DurationNanos(time.Second)},
		},
		{
			name: "duration nanos from string",
			in:   `{"Timeout":5,"Interval":"1m"}`,
			want: testDoc{Timeout: 5, Interval: DurationNanos(time.Minute)},
		},
		{
			name: "time",
			in:   `{"Created":"2024-01-02T03:04:05Z"}`,
			want: testDoc{Created: &ts},
		},
		{
			name: "generic config keeps keys and uses json.Number",
			in:   `{"Config":{"protocol":"http","local_connect_timeout_ms":1000,"nested":{"A_b":[1.5,true,null]}}}`,
			want: testDoc{Config: map[string]any{
				"protocol":                 "http",
				"local_connect_timeout_ms": json.Number("1000"),
				"nested":                   map[string]any{"A_b": []any{json.Number("1.5"), true, nil}},
			}},
		},
		{
			name: "header map of lists",
			in:   `{"Header":{"X-Foo":["a","b"]}}`,
			want: testDoc{Header: map[string][]string{"X-Foo": {"a", "b"}}},
		},
		{
			name: "single object into list of structs",
			in:   `{"Services":{"Name":"web","Consumers":{"Peer":"west"}}}`,
			want: testDoc{Services: []testService{{Name: "web", Consumers: []testConsumer{{Peer: "west"}}}}},
		},
		{
			name: "single object list into struct",
			in:   `{"MeshGateway":[{"Mode":"remote"}],"Ptr":[{"Mode":"none"}]}`,
			want: testDoc{MeshGateway: testGateway{Mode: "remote"}, Ptr: &testGateway{Mode: "none"}},
		},
		{
			name: "whole float into int",
			in:   `{"Port":1e3,"Retries":2.0}`,
			want: testDoc{Port: 1000, Retries: 2},
		},
		{
			name: "float",
			in:   `{"Weight":33.33}`,
			want: testDoc{Weight: 33.33},
		},
		{
			name: "null leaves values alone",
			in:   `{"Name":null,"Services":null,"Ptr":null,"Port":null}`,
			want: testDoc{},
		},
		{
			name: "map of structs",
			in:   `{"Subsets":{"v1":{"mode":"local"}}}`,
			want: testDoc{Subsets: map[string]testGateway{"v1": {Mode: "local"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			if err := JSON([]byte(tt.in), &got); err != nil {
				t.Fatalf("JSON: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJSONErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantPath string
		wantMsg  string // substring
	}{
		{"wrong type int", `{"Port":"abc"}`, "Port", `expected a whole number, got string "abc"`},
		{"fraction into int", `{"Port":1.5}`, "Port", "expected a whole number between"},
		{"overflow int8", `{"Small":300}`, "Small", "between -128 and 127, got 300"},
		{"negative uint", `{"Retries":-1}`, "Retries", "between 0 and 4294967295, got -1"},
		{"wrong type string", `{"Name":3}`, "Name", "expected a string, got number 3"},
		{"wrong type bool", `{"Enabled":"yes"}`, "Enabled", `expected true or false, got string "yes"`},
		{"wrong type list", `{"TagList":{"Name":"x"}}`, "tag_list", "expected a list, got an object"},
		{"scalar for list", `{"Services":"web"}`, "Services", `expected a list, got string "web"`},
		{"wrong type object", `{"MeshGateway":"local"}`, "MeshGateway", `expected an object, got string "local"`},
		{"list of two into struct", `{"MeshGateway":[{},{}]}`, "MeshGateway", "expected a single object, got a list of 2"},
		{"unknown field suggestion", `{"Services":[{"Name":"a","Consumers":[{"Peer":"x"},{"Peers":"y"}]}]}`, "Services[0].Consumers[1]", `unknown field "Peers"; did you mean "Peer"?`},
		{"unknown field list", `{"Services":[{"Bogus":1}]}`, "Services[0]", `unknown field "Bogus"; valid fields are Name, Namespace, Consumers`},
		{"unknown top field", `{"Ignored":"x"}`, "", `unknown field "Ignored"`},
		{"unexported field", `{"hidden":"x"}`, "", `unknown field "hidden"`},
		{"same field twice", `{"PeerName":"a","peer_name":"b"}`, "", `"PeerName" and "peer_name" both set PeerName`},
		{"bad duration", `{"Timeout":"10 parsecs"}`, "Timeout", `invalid duration "10 parsecs"`},
		{"negative duration number", `{"Timeout":-5}`, "Timeout", "must not be negative"},
		{"negative duration string", `{"Interval":"-1s"}`, "Interval", "must not be negative"},
		{"bad time", `{"Created":5}`, "Created", ""},
		{"map value type", `{"Meta":{"a":1}}`, "Meta[\"a\"]", "expected a string, got number 1"},
		{"nested map struct", `{"Subsets":{"v1":{"Mod":"x"}}}`, `Subsets["v1"]`, `did you mean "Mode"?`},
		{"syntax error", "{\n  \"Name\": \"a\",\n  \"Port\": }", "", "line 3, column 11: invalid character '}'"},
		{"truncated", `{"Name":`, "", "unexpected end of JSON input"},
		{"trailing data", `{} {}`, "", "line 1, column 4: unexpected data after the end of the document"},
		{"duplicate key", "{\"Name\":\"a\",\n\"Name\":\"b\"}", "", `line 2, column 1: key "Name" is set more than once`},
		{"empty", ``, "", "unexpected end of JSON input"},
		{"top-level list into struct", `[1]`, "", "expected an object, got a list"},
		{"too deep", `{"Config":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}`, "", "nesting is deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			err := JSON([]byte(tt.in), &got)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("got error %v (%T), want *Error", err, err)
			}
			if !strings.HasPrefix(de.Path, tt.wantPath) {
				t.Errorf("got path %q, want %q", de.Path, tt.wantPath)
			}
			if !strings.Contains(de.Msg, tt.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", de.Msg, tt.wantMsg)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"with path", &Error{Path: "Port", Msg: "bad"}, "Port: bad"},
		{"without path", &Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHCL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want testDoc
	}{
		{
			name: "attributes and snake case",
			in: `
Kind = "exported-services"
name = "default"
peer_name = "west"
port = 8080
weight = 12.5
enabled = true
timeout = "15s"
interval = 1000
meta = { Some_Key = "v" }
`,
			want: testDoc{Kind: "exported-services", Name: "default", PeerName: "west", Port: 8080, Weight: 12.5, Enabled: true,
				Timeout: Duration(15 * time.Second), Interval: 1000, Meta: map[string]string{"Some_Key": "v"}},
		},
		{
			name: "object and list literals",
			in:   `Services = [{ Name = "web", Consumers = [{ Peer = "west" }, { peer_name = "east" }] }]`,
			want: testDoc{Services: []testService{{Name: "web", Consumers: []testConsumer{{Peer: "west"}, {Peer: "east"}}}}},
		},
		{
			name: "one block into a slice and a struct",
			in: `
Services {
  Name = "web"
  Consumers {
    Peer = "west"
  }
}
mesh_gateway {
  mode = "local"
}
Meta {
  k = "v"
}
`,
			want: testDoc{
				Services:    []testService{{Name: "web", Consumers: []testConsumer{{Peer: "west"}}}},
				MeshGateway: testGateway{Mode: "local"},
				Meta:        map[string]string{"k": "v"},
			},
		},
		{
			name: "repeated blocks",
			in: `
Services {
  Name = "a"
  Consumers { Peer = "p1" }
  Consumers { Partition = "p2" }
}
Services {
  Name = "b"
  Consumers = [{ SamenessGroup = "sg" }]
}
`,
			want: testDoc{Services: []testService{
				{Name: "a", Consumers: []testConsumer{{Peer: "p1"}, {Partition: "p2"}}},
				{Name: "b", Consumers: []testConsumer{{SamenessGroup: "sg"}}},
			}},
		},
		{
			name: "labelled blocks",
			in: `
Subsets "v1" { Mode = "local" }
Subsets "v2" { Mode = "remote" }
`,
			want: testDoc{Subsets: map[string]testGateway{"v1": {Mode: "local"}, "v2": {Mode: "remote"}}},
		},
		{
			name: "config map keeps keys",
			in: `
Config {
  protocol = "http"
  Some_Thing = 3
  list = [1, "a"]
}
`,
			want: testDoc{Config: map[string]any{"protocol": "http", "Some_Thing": json.Number("3"), "list": []any{json.Number("1"), "a"}}},
		},
		{
			name: "arithmetic and templates without variables",
			in:   `Port = 80 * 2` + "\n" + `Name = "web-${1 + 1}"`,
			want: testDoc{Port: 160, Name: "web-2"},
		},
		{
			name: "heredoc",
			in:   "Name = <<EOT\nweb\nEOT\n",
			want: testDoc{Name: "web\n"},
		},
		{
			name: "HCL 1 nested blocks in object literals, as in Consul's docs",
			in: `
Services = [
  {
    Name = "web"
    Consumers = [
      {
        Peer = "west"
      },
    ]
  },
  {
    Name = "api"
    Consumers{ Peer = "east" }
  }
]
Subsets = {
  "v1" = { Mode = "local" }
  v2 { Mode = "remote" }
  "v3"	{ Mode = "none" }
}
`,
			want: testDoc{
				Services: []testService{{Name: "web", Consumers: []testConsumer{{Peer: "west"}}}, {Name: "api", Consumers: []testConsumer{{Peer: "east"}}}},
				Subsets:  map[string]testGateway{"v1": {Mode: "local"}, "v2": {Mode: "remote"}, "v3": {Mode: "none"}},
			},
		},
		{
			name: "empty document",
			in:   "",
			want: testDoc{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			if err := HCL([]byte(tt.in), "test.hcl", &got); err != nil {
				t.Fatalf("HCL: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHCLErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantPath string
		wantMsg  string
	}{
		{"syntax error", "Name = \"a\"\nPort = = 3\n", "", "test.hcl:2,"},
		{"variable", `Name = web`, "Name", "Variables not allowed"},
		{"function", `Name = upper("web")`, "Name", "Functions may not be called here"},
		{"unknown field", `Services = [{ Nme = "web" }]`, "Services[0]", `unknown field "Nme"; did you mean "Name"?`},
		{"wrong type", `Port = "abc"`, "Port", `expected a whole number, got string "abc"`},
		{"two blocks into struct", "mesh_gateway {}\nmesh_gateway {}\n", "MeshGateway", "expected a single object, got a list of 2"},
		{"attribute and block", "Meta = {}\nMeta {}\n", "Meta", "both as an attribute and as a block"},
		{"duplicate label", "Subsets \"v1\" {}\nSubsets \"v1\" {}\n", `Subsets["v1"]`, `duplicate "Subsets" block`},
		{"mixed labels", "Subsets \"v1\" {}\nSubsets {}\n", "Subsets", "same number of labels"},
		{"number too large", `Port = 1e999999`, "Port", "out of range"},
		{"duplicate attribute", "Name = \"a\"\nName = \"b\"\n", "", "Attribute redefined"},
		{"duplicate object key", "Services = [{\n  Name = \"a\"\n  name = \"b\"\n  Name = \"c\"\n}]\n", "Services", `test.hcl:4,3-7: key "Name" is set more than once`},
		{"repeated nested block in object literal", "Services = [{\n  Consumers { Peer = \"a\" }\n  Consumers { Peer = \"b\" }\n}]\n", "Services", `test.hcl:3,3-12: key "Consumers" is set more than once`},
		{"compat reports the remaining error", "Services = [{\n  Consumers { Peer = \"a\" }\n  Name = \n}]\n", "", "test.hcl:3,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			err := HCL([]byte(tt.in), "test.hcl", &got)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("got error %v (%T), want *Error", err, err)
			}
			if de.Path != tt.wantPath {
				t.Errorf("got path %q, want %q (error %v)", de.Path, tt.wantPath, err)
			}
			if !strings.Contains(de.Msg, tt.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", de.Msg, tt.wantMsg)
			}
		})
	}
}

func TestAuto(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"json object", `  {"Name":"a"}`, "a", ""},
		{"json with BOM", "\xef\xbb\xbf{\"Name\":\"a\"}", "a", ""},
		{"hcl", `Name = "a"`, "a", ""},
		{"json error has file position", "{\n\"Name\" 1}", "", "x.json:2,8: invalid character '1'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			err := Auto([]byte(tt.in), "x.json", &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if got.Name != tt.want {
				t.Errorf("got Name %q, want %q", got.Name, tt.want)
			}
		})
	}
}

func TestGeneric(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]any
		wantErr string
	}{
		{"json", `{"a":1,"b":[true,null],"c":{"d":"e"}}`, map[string]any{"a": json.Number("1"), "b": []any{true, nil}, "c": map[string]any{"d": "e"}}, ""},
		{"hcl", "a = 1.25\nb { c = \"d\" }\n", map[string]any{"a": json.Number("1.25"), "b": []any{map[string]any{"c": "d"}}}, ""},
		{"hcl nested labels", "f \"x\" \"y\" { a = 1 }\n", map[string]any{"f": map[string]any{"x": map[string]any{"y": map[string]any{"a": json.Number("1")}}}}, ""},
		{"json list", `[1]`, nil, "expected a JSON object at the top level, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Generic([]byte(tt.in), "g")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

type namedMode string

func TestInto(t *testing.T) {
	tests := []struct {
		name    string
		raw     map[string]any
		want    testDoc
		wantErr string
	}{
		{
			name: "go values",
			raw: map[string]any{
				"name":     namedMode("web"),
				"port":     8080,
				"retries":  uint8(3),
				"weight":   50.0,
				"meta":     map[string]string{"a": "b"},
				"tag_list": []string{"x"},
				"config":   map[string]any{"n": 1.5, "i": int64(2)},
				"services": []map[string]any{{"name": "s", "consumers": []any{map[string]any{"peer": "p"}}}},
				"ptr":      &testGateway{},
			},
			wantErr: "unsupported value of Go type decode.testGateway",
		},
		{
			name: "go values without structs",
			raw: map[string]any{
				"name":     namedMode("web"),
				"port":     8080,
				"retries":  uint8(3),
				"weight":   50.0,
				"meta":     map[string]string{"a": "b"},
				"tag_list": []string{"x"},
				"config":   map[string]any{"n": 1.5, "i": int64(2)},
				"services": []map[string]any{{"name": "s", "consumers": []any{map[string]any{"peer": "p"}}}},
			},
			want: testDoc{
				Name: "web", Port: 8080, Retries: 3, Weight: 50, Meta: map[string]string{"a": "b"}, Tags: []string{"x"},
				Config:   map[string]any{"n": json.Number("1.5"), "i": json.Number("2")},
				Services: []testService{{Name: "s", Consumers: []testConsumer{{Peer: "p"}}}},
			},
		},
		{name: "nil", raw: nil, want: testDoc{}},
		{name: "invalid json.Number", raw: map[string]any{"port": json.Number("0x10")}, wantErr: `port: invalid number "0x10"`},
		{name: "unknown", raw: map[string]any{"nope": 1}, wantErr: `unknown field "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testDoc
			err := Into(tt.raw, &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIntoDoesNotAliasInput(t *testing.T) {
	inner := map[string]any{"k": "v"}
	raw := map[string]any{"Config": map[string]any{"inner": inner}}
	var got testDoc
	if err := Into(raw, &got); err != nil {
		t.Fatalf("got error %v, want nil", err)
	}
	got.Config["inner"].(map[string]any)["k"] = "changed"
	if inner["k"] != "v" {
		t.Errorf("got input value %q after changing the output, want %q", inner["k"], "v")
	}
}

func TestBadTarget(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"non-pointer", testDoc{}},
		{"nil pointer", (*testDoc)(nil)},
		{"channel", new(chan int)},
		{"non-empty interface", new(error)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := JSON([]byte(`{"a":1}`), tt.v); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

func TestDurationNanos(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		out  string
	}{
		{"string", `"1.5s"`, 1500 * time.Millisecond, "1500000000"},
		{"number", `250`, 250, "250"},
		{"null", `null`, 0, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d DurationNanos
			if err := json.Unmarshal([]byte(tt.in), &d); err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if d.D() != tt.want {
				t.Errorf("got %v, want %v", d.D(), tt.want)
			}
			b, err := json.Marshal(d)
			if err != nil || string(b) != tt.out {
				t.Errorf("got %s, %v, want %s", b, err, tt.out)
			}
		})
	}
}
