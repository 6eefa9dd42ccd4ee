package config

import (
	"flag"
	"io"
	"testing"
	"time"
)

// The stream secret rotation setting reaches its field from a file and
// from its flag, the flag winning.
func TestStreamSecretRotationSetting(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": "peering {\n  stream_secret_rotation = \"6h\"\n}\n"})
	c := CommandLineConfig()
	if err := c.LoadFiles(dir); err != nil {
		t.Fatal(err)
	}
	if c.PeeringStreamSecretRotation != 6*time.Hour {
		t.Fatalf("from the file: got %v, want 6h", c.PeeringStreamSecretRotation)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for i := range settings {
		if settings[i].flag {
			settings[i].bindFlag(fs, &c)
		}
	}
	if fs.Lookup("peering-stream-secret-rotation") == nil {
		t.Fatal("flag -peering-stream-secret-rotation is missing")
	}
	if err := fs.Parse([]string{"-peering-stream-secret-rotation", "30m"}); err != nil {
		t.Fatal(err)
	}
	if c.PeeringStreamSecretRotation != 30*time.Minute {
		t.Fatalf("from the flag: got %v, want 30m", c.PeeringStreamSecretRotation)
	}
}
