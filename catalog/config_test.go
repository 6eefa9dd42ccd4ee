package catalog

import (
	"strings"
	"testing"
)

func TestValidateDatacenter(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"dc1", true},
		{"east_1-b", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{"DC_9!", false},
		{"dc 1", false},
		{"dc.1", false},
		{strings.Repeat("a", 64), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateDatacenter(tt.name); (err == nil) != tt.ok {
				t.Errorf("ValidateDatacenter(%q) = %v, want ok=%t", tt.name, err, tt.ok)
			}
		})
	}
	c := DevConfig()
	c.NodeName, c.NodeID, c.Datacenter = "n", "8f1a0b9e-3c1d-4d2e-9f00-000000000001", "DC_9!"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not a datacenter name") {
		t.Errorf("Config.Validate with datacenter DC_9!: got %v", err)
	}
}
