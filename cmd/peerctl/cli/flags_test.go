package cli

import (
	"slices"
	"testing"
)

func TestNormalizeArgs(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{
			name: "global flag before command",
			in:   []string{"-http-addr", "10.0.0.1:8500", "members"},
			want: []string{"--http-addr", "10.0.0.1:8500", "members"},
		},
		{
			name: "global flag after command",
			in:   []string{"members", "-http-addr=10.0.0.1:8500", "-format", "json"},
			want: []string{"members", "--http-addr=10.0.0.1:8500", "--format", "json"},
		},
		{
			name: "double dash left alone",
			in:   []string{"members", "--format", "json"},
			want: []string{"members", "--format", "json"},
		},
		{
			name: "nested command flags",
			in:   []string{"config", "read", "-kind", "service-defaults", "-name", "web"},
			want: []string{"config", "read", "--kind", "service-defaults", "--name", "web"},
		},
		{
			name: "bool flag does not take the next word",
			in:   []string{"config", "write", "-cas", "-modify-index", "7", "entry.hcl"},
			want: []string{"config", "write", "--cas", "--modify-index", "7", "entry.hcl"},
		},
		{
			name: "stdin dash",
			in:   []string{"config", "write", "-"},
			want: []string{"config", "write", "-"},
		},
		{
			name: "negative number positional",
			in:   []string{"services", "register", "-5"},
			want: []string{"services", "register", "-5"},
		},
		{
			name: "value that looks like a flag",
			in:   []string{"services", "register", "-name", "-web", "-port", "-1"},
			want: []string{"services", "register", "--name", "-web", "--port", "-1"},
		},
		{
			name: "repeatable flags",
			in:   []string{"services", "register", "-name", "web", "-tag", "a", "-tag=b", "-meta", "k=v"},
			want: []string{"services", "register", "--name", "web", "--tag", "a", "--tag=b", "--meta", "k=v"},
		},
		{
			name: "shorthand help left alone",
			in:   []string{"members", "-h"},
			want: []string{"members", "-h"},
		},
		{
			name: "long help",
			in:   []string{"members", "-help"},
			want: []string{"members", "--help"},
		},
		{
			name: "unknown long flag rewritten for a clear error",
			in:   []string{"members", "-bogus"},
			want: []string{"members", "--bogus"},
		},
		{
			name: "flag of another command is not known here",
			in:   []string{"members", "-kind", "x"},
			want: []string{"members", "--kind", "x"},
		},
		{
			name: "after terminator",
			in:   []string{"services", "deregister", "--", "-name", "-"},
			want: []string{"services", "deregister", "--", "-name", "-"},
		},
		{
			name: "positional stops command lookup",
			in:   []string{"services", "register", "config", "-name", "x"},
			want: []string{"services", "register", "config", "--name", "x"},
		},
		{
			name: "help command",
			in:   []string{"help", "members"},
			want: []string{"help", "members"},
		},
		{
			name: "empty",
			in:   []string{},
			want: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCommand(&env{getenv: func(string) string { return "" }})
			got := normalizeArgs(root, tt.in)
			if got == nil {
				t.Fatalf("got nil, want a non-nil slice (cobra reads os.Args for nil)")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKVFlag(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    string
		wantErr bool
	}{
		{name: "one", in: []string{"team=payments"}, want: "team=payments"},
		{name: "sorted", in: []string{"b=2", "a=1"}, want: "a=1,b=2"},
		{name: "value with equals and comma", in: []string{"q=a=b,c"}, want: "q=a=b,c"},
		{name: "empty value", in: []string{"k="}, want: "k="},
		{name: "last wins", in: []string{"k=1", "k=2"}, want: "k=2"},
		{name: "no equals", in: []string{"k"}, wantErr: true},
		{name: "no key", in: []string{"=v"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m kvFlag
			var err error
			for _, s := range tt.in {
				if err = m.Set(s); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got := m.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
