package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	passing  = instanceState{Present: true, Status: "passing"}
	warning  = instanceState{Present: true, Status: "warning"}
	absent   = instanceState{}
	checkT0  = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	atSecond = func(s int) time.Time { return checkT0.Add(time.Duration(s) * time.Second) }
)

// write records one finished write in h.
func write(h *history, id string, want instanceState, start, end int, acked bool) {
	op := h.begin(id, want, atSecond(start))
	h.finish(op, acked, atSecond(end))
}

func TestCheckerFindsALostWrite(t *testing.T) {
	h := newHistory()
	write(h, "w-1", passing, 0, 1, true)
	write(h, "w-2", passing, 1, 2, true)
	write(h, "w-1", warning, 2, 3, true) // a health flip
	exp := h.expected(atSecond(10))

	if lost := lostWrites(exp, map[string]instanceState{"w-1": warning, "w-2": passing}); len(lost) != 0 {
		t.Fatalf("a node holding every write: lost %v", lost)
	}
	lost := lostWrites(exp, map[string]instanceState{"w-1": warning})
	if len(lost) != 1 || !strings.HasPrefix(lost[0], "w-2: absent") {
		t.Fatalf("a node missing w-2: lost %v, want w-2 reported absent", lost)
	}
	lost = lostWrites(exp, map[string]instanceState{"w-1": passing, "w-2": passing})
	if len(lost) != 1 || !strings.HasPrefix(lost[0], "w-1: passing, want warning") {
		t.Fatalf("a node that lost the flip: lost %v", lost)
	}
}

func TestCheckerFindsAnUndoneDeregistration(t *testing.T) {
	h := newHistory()
	write(h, "w-1", passing, 0, 1, true)
	write(h, "w-1", absent, 1, 2, true)
	lost := lostWrites(h.expected(atSecond(10)), map[string]instanceState{"w-1": passing})
	if len(lost) != 1 {
		t.Fatalf("an acknowledged deregistration undone: lost %v", lost)
	}
}

func TestCheckerAllowsWritesInDoubt(t *testing.T) {
	h := newHistory()
	write(h, "w-1", passing, 0, 1, true)
	write(h, "w-1", warning, 1, 4, false) // timed out: may apply later
	write(h, "w-2", passing, 2, 3, false) // failed: may or may not exist
	write(h, "w-3", passing, 8, 9, true)  // acknowledged after the cutoff
	if !h.isTainted("w-1") || h.isTainted("w-3") {
		t.Fatal("a write in doubt must taint its ID, an acknowledged one not")
	}
	exp := h.expected(atSecond(7))
	for _, actual := range []map[string]instanceState{
		{"w-1": passing},
		{"w-1": warning, "w-2": passing, "w-3": passing},
	} {
		if lost := lostWrites(exp, actual); len(lost) != 0 {
			t.Fatalf("%v: lost %v, want none (every difference is in doubt)", actual, lost)
		}
	}
	if lost := lostWrites(exp, map[string]instanceState{}); len(lost) != 1 || !strings.HasPrefix(lost[0], "w-1") {
		t.Fatalf("w-1's acknowledged registration missing: lost %v", lost)
	}
	// A write still running is in doubt too.
	h.begin("w-4", passing, atSecond(9))
	if lost := lostWrites(h.expected(atSecond(20)), map[string]instanceState{"w-1": passing, "w-3": passing}); len(lost) != 0 {
		t.Fatalf("a write in flight: lost %v", lost)
	}
	if n := h.ackedBetween(atSecond(0), atSecond(5)); n != 1 {
		t.Fatalf("acknowledged in [0s, 5s): %d, want 1", n)
	}
}

func TestCheckerFindsAStaleImport(t *testing.T) {
	exporter := map[string]instanceState{"w-1": passing, "w-2": warning}
	if d := staleImports(exporter, map[string]instanceState{"w-1": passing, "w-2": warning}); len(d) != 0 {
		t.Fatalf("equal views: %v", d)
	}
	for name, importer := range map[string]map[string]instanceState{
		"missing":    {"w-1": passing},
		"left over":  {"w-1": passing, "w-2": warning, "w-9": passing},
		"old health": {"w-1": passing, "w-2": passing},
	} {
		if d := staleImports(exporter, importer); len(d) != 1 {
			t.Errorf("%s: differences %v, want one", name, d)
		}
	}
}

func TestCheckerAllowsAnExportChangingMidCheck(t *testing.T) {
	before := map[string]instanceState{"w-1": passing, "w-2": passing}
	after := map[string]instanceState{"w-1": warning, "w-2": passing, "w-3": passing}
	for _, importer := range []map[string]instanceState{
		{"w-1": passing, "w-2": passing},                 // as before
		{"w-1": warning, "w-2": passing},                 // mid-replication
		{"w-1": warning, "w-2": passing, "w-3": passing}, // as after
	} {
		if d := staleImportsBetween(before, after, importer); len(d) != 0 {
			t.Fatalf("%v: differences %v, want none", importer, d)
		}
	}
	for name, importer := range map[string]map[string]instanceState{
		"an unchanged instance missing":      {"w-1": warning},
		"a state the exporter never had":     {"w-1": passing, "w-2": warning},
		"an instance the exporter never had": {"w-1": passing, "w-2": passing, "w-9": passing},
	} {
		if d := staleImportsBetween(before, after, importer); len(d) != 1 {
			t.Errorf("%s: differences %v, want one", name, d)
		}
	}
}

func TestReportFailsAMissedTarget(t *testing.T) {
	log := &requestLog{}
	for i := range 10 {
		r := &request{Start: atSecond(i), End: atSecond(i).Add(100 * time.Millisecond)}
		if i == 4 {
			r.Err = errors.New("connection reset")
			r.End = atSecond(i).Add(2 * time.Second) // in flight at 5 s
		}
		log.add(r)
	}
	failed, total, inFlight := log.between(atSecond(0), atSecond(10), atSecond(5))
	if failed != 1 || total != 10 || inFlight != 1 {
		t.Fatalf("between: %d failed of %d, %d in flight, want 1 of 10, 1", failed, total, inFlight)
	}
	ok := faultResult{Name: "kill -9 a's leader", Acked: 40, Converge: 2 * time.Second, Bound: 5 * time.Second, CaughtUp: 3 * time.Second,
		Failed: failed, Total: total, Allowed: inFlight, Budget: inFlightOnly}
	rows := map[string]faultResult{"ok": ok}
	lost := ok
	lost.Lost = 1
	rows["lost"] = lost
	stale := ok
	stale.Stale, stale.Converge = 3, -1
	rows["stale"] = stale
	slow := ok
	slow.Converge = 6 * time.Second
	rows["slow"] = slow
	lagging := ok
	lagging.CaughtUp = 20 * time.Second
	rows["a server trailing past its bound"] = lagging
	restart := ok
	restart.Budget, restart.Allowed = noFailures, 0
	rows["failed request"] = restart
	for name, row := range rows {
		r := report{Rows: []faultResult{row}}
		if got := len(r.problems()); (got == 0) != (name == "ok") {
			t.Errorf("%s: problems %v", name, r.problems())
		}
	}
	r := report{Rows: []faultResult{ok, lost, {Name: "netem", Skipped: "not in the short profile"}}}
	want := "e2e: 2 faults, 80 acknowledged writes, 1 lost, 0 stale after convergence, 2/20 requests failed"
	if got := r.summary(); got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	if tab := r.table(); !strings.Contains(tab, "FAIL: 1 acknowledged writes lost") || !strings.Contains(tab, "skipped: not in the short profile") {
		t.Fatalf("table:\n%s", tab)
	}
}
