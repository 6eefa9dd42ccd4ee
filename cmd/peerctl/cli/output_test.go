package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestPrintTable(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		rows    [][]string
		want    string
	}{
		{
			name:    "aligned with two spaces",
			headers: []string{"Node", "Address", "Status"},
			rows: [][]string{
				{"node-a", "10.0.0.1:8301", "alive"},
				{"b", "10.0.0.22:8301", "failed"},
			},
			want: "" +
				"Node    Address         Status\n" +
				"node-a  10.0.0.1:8301   alive\n" +
				"b       10.0.0.22:8301  failed\n",
		},
		{
			name: "no headers",
			rows: [][]string{{"web"}, {"db"}},
			want: "web\ndb\n",
		},
		{
			name:    "empty trailing cells leave no trailing spaces",
			headers: []string{"Name", "Tags"},
			rows:    [][]string{{"web", ""}, {"db", "primary"}},
			want: "" +
				"Name  Tags\n" +
				"web\n" +
				"db    primary\n",
		},
		{
			name:    "tabs and newlines in cells",
			headers: []string{"A", "B"},
			rows:    [][]string{{"x\ty", "1\n2"}},
			want: "" +
				"A    B\n" +
				"x y  1 2\n",
		},
		{
			name:    "headers only",
			headers: []string{"Node", "ID"},
			want:    "Node  ID\n",
		},
		{
			name: "nothing",
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := printTable(&b, tt.headers, tt.rows); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPrintJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    string
		wantErr bool
	}{
		{
			name: "raw bytes keep order and unknown fields",
			in:   []byte(`{"Z":1,"A":{"Peer":"b"}, "Extra": [1, 2]}`),
			want: "{\n    \"Z\": 1,\n    \"A\": {\n        \"Peer\": \"b\"\n    },\n    \"Extra\": [\n        1,\n        2\n    ]\n}\n",
		},
		{
			name: "raw message with surrounding space",
			in:   json.RawMessage(" [] \n"),
			want: "[]\n",
		},
		{
			name: "value",
			in:   map[string]any{"Name": "a<b>"},
			want: "{\n    \"Name\": \"a<b>\"\n}\n",
		},
		{
			name: "list of raw messages",
			in:   []json.RawMessage{json.RawMessage(`{"B":1,"A":2}`)},
			want: "[\n    {\n        \"B\": 1,\n        \"A\": 2\n    }\n]\n",
		},
		{
			name:    "not json",
			in:      []byte("<html>"),
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			err := printJSON(&b, tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got := b.String(); !tt.wantErr && got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestCheckFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "table", want: "table"},
		{in: "json", want: "json"},
		{in: "pretty", want: "table"},
		{in: "yaml", wantErr: true},
		{in: "JSON", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f := tt.in
			err := checkFormat(&cobra.Command{Use: "x"}, &f)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if ExitCode(err) != 2 {
					t.Errorf("got exit code %d, want 2", ExitCode(err))
				}
				return
			}
			if f != tt.want {
				t.Errorf("got %q, want %q", f, tt.want)
			}
		})
	}
}
