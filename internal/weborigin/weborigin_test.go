package weborigin

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "https://UI.Example.com:443", want: "https://ui.example.com"},
		{in: "http://localhost:80", want: "http://localhost"},
		{in: "http://localhost:8500", want: "http://localhost:8500"},
		{in: "http://[::1]:8500", want: "http://[::1]:8500"},
		{in: "https://example.com/", want: "https://example.com"},
		{in: "null", bad: true},
		{in: "*", bad: true},
		{in: "example.com", bad: true},
		{in: "ftp://example.com", bad: true},
		{in: "https://user@example.com", bad: true},
		{in: "https://example.com/x", bad: true},
		{in: "https://example.com?q", bad: true},
		{in: "https://", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:8500", "127.0.0.1", true},
		{"[::1]:8500", "::1", true},
		{"[::1]", "::1", true},
		{"example.com", "example.com", true},
		{"example.com:80", "example.com", true},
		{"", "", true},
		{"::1", "", false},
		{"example.com:", "", false},
		{"example.com:8x", "", false},
		{"a b", "", false},
		{"evil.example@127.0.0.1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := SplitHost(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("got %q, %t, want %q, %t", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParse: Parse never panics, and what it returns is a fixed point: an
// allowed origin compares equal however a browser spells it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"https://UI.example.com:443", "http://[::1]:8500", "null", "http://a:b@c", "https://x/%2e", "http://[fe80::1%25eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		norm, err := Parse(origin)
		if err != nil {
			return
		}
		again, err := Parse(norm)
		if err != nil || again != norm {
			t.Fatalf("Parse(%q) = %q, which parses to %q, %v", origin, norm, again, err)
		}
		if h, ok := SplitHost(norm[strings.Index(norm, "://")+3:]); !ok || h == "" {
			t.Fatalf("Parse(%q) = %q, whose host does not split", origin, norm)
		}
	})
}
