package agent

import (
	"fmt"
	"testing"
	"time"
)

// A client's registrations come back when the servers lose all state: the
// only server dies with its data and a fresh one takes its place.
func TestClientReRegistersAfterServerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	s1 := testAgent(t, "s1", true, 1)
	c1 := testAgent(t, "c1", false, 0, s1.Cluster().GossipAddr())
	code, b, err := httpDo("PUT", "http://"+c1.HTTPAddr()+"/v1/agent/service/register", map[string]any{
		"Name": "db", "Port": 5432,
	})
	if err != nil || code != 200 {
		t.Fatalf("register: %d %s %v", code, b, err)
	}
	seen := func(a *Agent) func() error {
		return func() error {
			var svcs map[string][]string
			if err := getJSON("http://"+a.HTTPAddr()+"/v1/catalog/services", &svcs); err != nil {
				return err
			}
			if _, ok := svcs["db"]; !ok {
				return fmt.Errorf("got services %v, want db", svcs)
			}
			return nil
		}
	}
	eventually(t, 5*time.Second, "db registered", seen(s1))

	_ = s1.Shutdown(false) // the server and its data are gone
	s2 := testAgent(t, "s2", true, 1, c1.Cluster().GossipAddr())
	eventually(t, 15*time.Second, "db re-registered on the new server", seen(s2))
}
