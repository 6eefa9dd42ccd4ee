package e2e

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// This file is the fault suite's checker: the history of writes the
// workload made, what each node must hold given that history, and the
// report. It has no I/O, so checker_unit_test.go feeds it histories with a
// lost write, a stale import, a failed request, and sees it fail.

// instanceState is one service instance as a node shows it: present or
// not, and its health.
type instanceState struct {
	Present bool
	Status  string // passing, warning or critical; "" when absent
}

func (s instanceState) String() string {
	if !s.Present {
		return "absent"
	}
	return s.Status
}

// writeOp is one write the workload sent: a registration (or a health
// flip, a registration again with another status) or a deregistration of
// one instance ID.
type writeOp struct {
	ID    string
	Want  instanceState // what the write sets
	Start time.Time
	End   time.Time // zero while the write runs
	Acked bool      // answered 200: it must never be lost
}

// history is every write of one cluster's writer, in the order sent.
// The writer sends one write at a time, and after a write whose outcome
// is unknown (an error or a timeout: it may still be applied later) it
// never writes that ID again: the ID is tainted. So each ID's final state
// is decided by its last acknowledged write, or by the one in doubt
// after it.
type history struct {
	mu      sync.Mutex
	ops     []*writeOp
	tainted map[string]bool
}

func newHistory() *history { return &history{tainted: map[string]bool{}} }

// begin records a write about to be sent; the caller ends it with finish.
func (h *history) begin(id string, want instanceState, now time.Time) *writeOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := &writeOp{ID: id, Want: want, Start: now}
	h.ops = append(h.ops, op)
	return op
}

// finish records the write's outcome.
func (h *history) finish(op *writeOp, acked bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.End, op.Acked = now, acked
	if !acked {
		h.tainted[op.ID] = true
	}
}

// isTainted says whether the writer must leave id alone.
func (h *history) isTainted(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tainted[id]
}

// ackedBetween counts the writes acknowledged in [from, to).
func (h *history) ackedBetween(from, to time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.ops {
		if op.Acked && !op.End.Before(from) && op.End.Before(to) {
			n++
		}
	}
	return n
}

// expectation is, for every ID written, the states a node may show.
type expectation map[string][]instanceState

// expected is what every node must hold of the writes decided before
// cutoff: a write acknowledged before it must be there; a write that
// ended later (or is still running) is in doubt, as is one that failed.
// cutoff allows for replication: a healthy follower applies a write
// within milliseconds of its acknowledgement.
func (h *history) expected(cutoff time.Time) expectation {
	h.mu.Lock()
	defer h.mu.Unlock()
	exp := expectation{}
	for _, op := range h.ops {
		decided := op.Acked && !op.End.IsZero() && op.End.Before(cutoff)
		prev, seen := exp[op.ID]
		switch {
		case decided:
			exp[op.ID] = []instanceState{op.Want}
		case seen:
			exp[op.ID] = append(prev, op.Want)
		default:
			// In doubt from the start: absent or as written.
			exp[op.ID] = []instanceState{{}, op.Want}
		}
	}
	return exp
}

// lostWrites lists the IDs whose state on a node is none the history
// allows: an acknowledged registration or flip missing, or an
// acknowledged deregistration undone. Instances the history never wrote
// are not the checker's business.
func lostWrites(exp expectation, actual map[string]instanceState) []string {
	var lost []string
	for id, allowed := range exp {
		got := actual[id]
		ok := false
		for _, a := range allowed {
			if a == got {
				ok = true
				break
			}
		}
		if !ok {
			lost = append(lost, fmt.Sprintf("%s: %s, want %s", id, got, describeStates(allowed)))
		}
	}
	sort.Strings(lost)
	return lost
}

func describeStates(ss []instanceState) string {
	var parts []string
	for _, s := range ss {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " or ")
}

// staleImports lists the differences between an exporter's view of its
// service and an importer's: instances missing, left over, or with
// another health.
func staleImports(exporter, importer map[string]instanceState) []string {
	return staleImportsBetween(exporter, exporter, importer)
}

// staleImportsBetween is staleImports for an exporter that may have
// changed while the importer was read: before and after are the
// exporter's views read just before and just after the importer's. An
// imported instance may show either state (it is mid-replication); one
// that shows neither is stale, and so is one the exporter had unchanged
// in both views and the importer does not.
func staleImportsBetween(before, after, importer map[string]instanceState) []string {
	ids := map[string]bool{}
	for _, m := range []map[string]instanceState{before, after, importer} {
		for id := range m {
			ids[id] = true
		}
	}
	var diff []string
	for id := range ids {
		got, b, a := importer[id], before[id], after[id]
		if got != b && got != a {
			diff = append(diff, fmt.Sprintf("%s: imported %s, exporter has %s (%s a moment before)", id, got, a, b))
		}
	}
	sort.Strings(diff)
	return diff
}

// request is one cross-peer HTTP request of the traffic workload.
type request struct {
	Start, End time.Time
	Err        error
}

// requestLog is every request, in the order started.
type requestLog struct {
	mu   sync.Mutex
	reqs []*request
}

func (l *requestLog) add(r *request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
}

// between returns the failed and total requests started in [from, to),
// and of the failed ones those that were in flight at instant (started
// before it, ended after it).
func (l *requestLog) between(from, to, instant time.Time) (failed, total, failedInFlight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.reqs {
		if r.Start.Before(from) || !r.Start.Before(to) {
			continue
		}
		total++
		if r.Err != nil {
			failed++
			if r.Start.Before(instant) && r.End.After(instant) {
				failedInFlight++
			}
		}
	}
	return failed, total, failedInFlight
}

// failures says what the failed requests in [from, to) were (at most n).
func (l *requestLog) failures(from, to time.Time, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.reqs {
		if r.Err != nil && !r.Start.Before(from) && r.Start.Before(to) && len(out) < n {
			out = append(out, fmt.Sprintf("%s (+%v): %v", r.Start.Format("15:04:05.000"), r.End.Sub(r.Start).Round(time.Millisecond), r.Err))
		}
	}
	return out
}

// caughtUpBound bounds how long after a heal every server holds every
// acknowledged write and an import equal to the export on its own: raft's
// retry backoff for a follower it failed to reach reaches 10.24 s
// (hashicorp/raft: 10 ms doubling, 12 rounds), plus a check's margin.
const caughtUpBound = 12 * time.Second

// requestBudget is which failed requests a fault may cost.
type requestBudget int

const (
	// noFailures: a restart or a CA rotation costs no request.
	noFailures requestBudget = iota
	// inFlightOnly: a leader kill or a server cut may fail only the
	// requests in flight on the connections it cut, at its instant.
	inFlightOnly
	// whileCut: a WAN partition (or loss on it) may fail requests sent
	// before the heal, and none after it.
	whileCut
)

// faultResult is one row of the report.
type faultResult struct {
	Name      string
	Acked     int           // writes acknowledged in the fault's window, both clusters
	Lost      int           // acknowledged writes lost on some node, found after this fault
	Stale     int           // import differences left at the convergence bound
	Converge  time.Duration // heal to the cluster views agreeing (-1: never, within the wait)
	Bound     time.Duration // the target for Converge
	CaughtUp  time.Duration // heal to every server agreeing on its own (-1: never, within the wait)
	Failed    int           // requests failed, of Total, in the fault's window
	Total     int
	Allowed   int // of Failed, those the budget allows
	Budget    requestBudget
	Details   []string // what went wrong, for the log
	Skipped   string   // why the fault did not run ("" = it ran)
	Unhealthy string   // a precondition that failed ("" = none)
}

// problems lists the targets the row misses.
func (r faultResult) problems() []string {
	if r.Skipped != "" {
		return nil
	}
	var p []string
	if r.Unhealthy != "" {
		p = append(p, r.Unhealthy)
	}
	if r.Lost > 0 {
		p = append(p, fmt.Sprintf("%d acknowledged writes lost", r.Lost))
	}
	if r.Stale > 0 {
		p = append(p, fmt.Sprintf("%d import differences at the %v bound", r.Stale, r.Bound))
	}
	if r.Converge < 0 {
		p = append(p, "never converged")
	} else if r.Converge > r.Bound {
		p = append(p, fmt.Sprintf("converged in %v, bound %v", r.Converge.Round(10*time.Millisecond), r.Bound))
	}
	if r.CaughtUp < 0 {
		p = append(p, "a server never caught up")
	} else if r.CaughtUp > caughtUpBound {
		p = append(p, fmt.Sprintf("servers caught up in %v, bound %v", r.CaughtUp.Round(10*time.Millisecond), caughtUpBound))
	}
	if r.Failed > r.Allowed {
		switch r.Budget {
		case noFailures:
			p = append(p, fmt.Sprintf("%d requests failed, want 0", r.Failed))
		case inFlightOnly:
			p = append(p, fmt.Sprintf("%d requests failed, %d of them in flight at the fault", r.Failed, r.Allowed))
		case whileCut:
			p = append(p, fmt.Sprintf("%d requests failed, %d of them sent before the heal", r.Failed, r.Allowed))
		}
	}
	return p
}

// report is the suite's outcome: a table and a summary line.
type report struct {
	Rows []faultResult
}

// summary is the one line the suite ends with.
func (r report) summary() string {
	var faults, acked, lost, stale, failed, total int
	for _, row := range r.Rows {
		if row.Skipped != "" {
			continue
		}
		faults++
		acked += row.Acked
		lost += row.Lost
		stale += row.Stale
		failed += row.Failed
		total += row.Total
	}
	return fmt.Sprintf("e2e: %d faults, %d acknowledged writes, %d lost, %d stale after convergence, %d/%d requests failed",
		faults, acked, lost, stale, failed, total)
}

// table renders the rows for people.
func (r report) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-34s %7s %5s %6s %12s %8s %10s %10s  %s\n", "fault", "acked", "lost", "stale", "converged in", "bound", "servers in", "failed/req", "verdict")
	for _, row := range r.Rows {
		if row.Skipped != "" {
			fmt.Fprintf(&b, "%-34s %s\n", row.Name, "skipped: "+row.Skipped)
			continue
		}
		conv, caught := "never", "never"
		if row.Converge >= 0 {
			conv = row.Converge.Round(10 * time.Millisecond).String()
		}
		if row.CaughtUp >= 0 {
			caught = row.CaughtUp.Round(10 * time.Millisecond).String()
		}
		verdict := "ok"
		if p := row.problems(); len(p) > 0 {
			verdict = "FAIL: " + strings.Join(p, "; ")
		}
		fmt.Fprintf(&b, "%-34s %7d %5d %6d %12s %8s %10s %10s  %s\n", row.Name, row.Acked, row.Lost, row.Stale, conv, row.Bound,
			caught, fmt.Sprintf("%d/%d", row.Failed, row.Total), verdict)
	}
	return b.String()
}

// problems lists every row's missed targets, prefixed by the fault.
func (r report) problems() []string {
	var p []string
	for _, row := range r.Rows {
		for _, q := range row.problems() {
			p = append(p, row.Name+": "+q)
		}
	}
	return p
}
