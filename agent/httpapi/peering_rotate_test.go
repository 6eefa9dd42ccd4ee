package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/peering"
)

func TestPeeringRotateSecretEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startPeeringNode(t, "a", "dc1", true)
	b := startPeeringNode(t, "b", "dc2", true)
	tok, err := b.peering.GenerateToken(ctx, peering.GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peering.Establish(ctx, peering.EstablishRequest{PeerName: "b", PeeringToken: tok}); err != nil {
		t.Fatal(err)
	}
	_, row, err := b.cluster.Store().Peering(nil, "a")
	if err != nil || row == nil {
		t.Fatalf("acceptor row: %v, %v", row, err)
	}
	active := func() string {
		sec, _ := b.cluster.Store().PeeringSecrets(row.ID)
		if sec == nil || sec.PendingStreamSecret != "" {
			return ""
		}
		return sec.ActiveStreamSecret
	}
	testutil.WaitFor(t, 10*time.Second, "the first stream to promote its secret", func() bool { return active() != "" })
	old := active()

	tests := []struct {
		name     string
		url      string
		wantCode int
		wantMsg  string
	}{
		{"on the acceptor", b.url + "/v1/peering/a/rotate-secret", http.StatusOK, ""},
		{"on the dialer", a.url + "/v1/peering/b/rotate-secret", http.StatusConflict, "rotate it in the cluster that generated the peering token"},
		{"unknown peering", b.url + "/v1/peering/nope/rotate-secret", http.StatusNotFound, "nope"},
		{"invalid name", b.url + "/v1/peering/Not_A_Name/rotate-secret", http.StatusBadRequest, "not a valid peer name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, http.MethodPost, tt.url, "")
			if code != tt.wantCode || !strings.Contains(body, tt.wantMsg) {
				t.Fatalf("got %d %q, want %d mentioning %q", code, body, tt.wantCode, tt.wantMsg)
			}
		})
	}
	testutil.WaitFor(t, 10*time.Second, "the rotated secret promoted", func() bool { return active() != "" && active() != old })
	if code, _ := call(t, http.MethodGet, b.url+"/v1/peering/a/rotate-secret", ""); code != http.StatusMethodNotAllowed && code != http.StatusNotFound {
		t.Fatalf("GET rotate-secret: got %d, want 405 or 404", code)
	}
}
