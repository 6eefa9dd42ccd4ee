package testutil

import "testing"

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want [3]int
	}{
		{"6.6", [3]int{6, 6, 0}},
		{"6.1.0-31-amd64", [3]int{6, 1, 0}},
		{"6.18.44-fc-v1045", [3]int{6, 18, 44}},
		{"5.15.0+", [3]int{5, 15, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseVersion(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v, want %v", got, err, tt.want)
			}
		})
	}
	if _, err := parseVersion("six"); err == nil {
		t.Error("got no error for \"six\"")
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b [3]int
		want int
	}{
		{[3]int{6, 1, 0}, [3]int{6, 6, 0}, -1},
		{[3]int{6, 12, 0}, [3]int{6, 6, 0}, 1},
		{[3]int{6, 6, 0}, [3]int{6, 6, 0}, 0},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%v, %v): got %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
