package catalog

import (
	"testing"

	"github.com/hashicorp/raft"
)

func TestFSMRejectsUnknownCommandWithoutPanicking(t *testing.T) {
	f := &fsm{store: newTestStore(t)}
	res := f.Apply(&raft.Log{Index: 1, Data: []byte(`{"Type":"from-the-future"}`)}).(*ApplyResult)
	if res.Err == "" {
		t.Fatal("unknown command applied without error")
	}
	res = f.Apply(&raft.Log{Index: 2, Data: []byte(`not json`)}).(*ApplyResult)
	if res.Err == "" {
		t.Fatal("garbage applied without error")
	}
}
