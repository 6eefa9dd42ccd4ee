package policy

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/hashicorp/go-bexpr"
	"github.com/hashicorp/go-bexpr/grammar"

	"github.com/peerd/peerd/catalog/state"
)

// filterMaxExpressions bounds the size of a subset filter's syntax tree.
// go-bexpr's default is two million, sized for API query filters; a subset
// filter written by an operator is a handful of clauses.
const filterMaxExpressions = 10000

// Filter is a compiled service-resolver subset filter: a go-bexpr expression
// evaluated against a state.CheckServiceNode, exactly as Consul evaluates
// subset filters, so selectors such as `Service.Tags contains "v2"`,
// `Service.Meta.version == v1` and `Node.Meta.zone == a` work. A Filter is
// immutable and safe for concurrent use. A nil *Filter matches every
// instance.
type Filter struct {
	expr string
	// shared is used by every goroutine when evaluation writes nothing.
	shared *bexpr.Evaluator
	// pool hands each goroutine an evaluator of its own when the expression
	// uses "matches": go-bexpr compiles those regular expressions lazily
	// into the syntax tree on first evaluation, which is a data race when
	// an evaluator is shared.
	pool *sync.Pool
}

// CompileFilter compiles a go-bexpr subset filter. An empty (or blank)
// expression gives a nil *Filter, which matches every instance. A syntax
// error, or a "matches" operand that is not a valid regular expression, is
// an error quoting the expression.
func CompileFilter(expr string) (f *Filter, err error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	defer func() {
		// go-bexpr's generated parser recovers its own panics; this is a
		// second net so that no filter text can crash the terminator.
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("invalid filter %q: parser failed: %v", expr, p)
		}
	}()
	ast, err := grammar.Parse("", []byte(expr), grammar.MaxExpressions(filterMaxExpressions))
	if err != nil {
		return nil, fmt.Errorf("invalid filter %q: %w", expr, err)
	}
	root, ok := ast.(grammar.Expression)
	if !ok {
		return nil, fmt.Errorf("invalid filter %q: not an expression", expr)
	}
	hasRegex, err := checkRegexes(root)
	if err != nil {
		return nil, fmt.Errorf("invalid filter %q: %w", expr, err)
	}
	ev, err := newEvaluator(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid filter %q: %w", expr, err)
	}
	f = &Filter{expr: expr}
	if !hasRegex {
		f.shared = ev
		return f, nil
	}
	f.pool = &sync.Pool{New: func() any {
		// The expression parsed once already, so this cannot fail; a nil
		// evaluator is handled by Eval anyway.
		ev, _ := newEvaluator(expr)
		return ev
	}}
	f.pool.Put(ev)
	return f, nil
}

func newEvaluator(expr string) (*bexpr.Evaluator, error) {
	return bexpr.CreateEvaluator(expr, bexpr.WithMaxExpressions(filterMaxExpressions))
}

// checkRegexes compiles the operands of "matches" operators, so that a bad
// one is reported when the filter is compiled, and reports whether there are
// any.
func checkRegexes(e grammar.Expression) (bool, error) {
	switch n := e.(type) {
	case *grammar.UnaryExpression:
		return checkRegexes(n.Operand)
	case *grammar.BinaryExpression:
		l, err := checkRegexes(n.Left)
		if err != nil {
			return false, err
		}
		r, err := checkRegexes(n.Right)
		return l || r, err
	case *grammar.CollectionExpression:
		return checkRegexes(n.Inner)
	case *grammar.MatchExpression:
		if n.Operator != grammar.MatchMatches && n.Operator != grammar.MatchNotMatches {
			return false, nil
		}
		if n.Value == nil {
			return true, nil
		}
		if _, err := regexp.Compile(n.Value.Raw); err != nil {
			return true, fmt.Errorf("selector %s: bad regular expression %q: %w", n.Selector, n.Value.Raw, err)
		}
		return true, nil
	}
	return false, nil
}

// Expression returns the filter's source text; "" for a nil filter.
func (f *Filter) Expression() string {
	if f == nil {
		return ""
	}
	return f.expr
}

// Match reports whether the instance passes the filter. An expression that
// cannot be evaluated against the instance (a selector naming no field, a
// nil Node or Service under a selector) does not match; Eval says why.
func (f *Filter) Match(csn state.CheckServiceNode) bool {
	ok, _ := f.Eval(csn)
	return ok
}

// Eval is Match with the evaluation error, for logging.
func (f *Filter) Eval(csn state.CheckServiceNode) (ok bool, err error) {
	if f == nil {
		return true, nil
	}
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, fmt.Errorf("filter %q: evaluation failed: %v", f.expr, p)
		}
	}()
	ev := f.shared
	if f.pool != nil {
		ev, _ = f.pool.Get().(*bexpr.Evaluator)
		if ev == nil {
			return false, fmt.Errorf("filter %q: no evaluator", f.expr)
		}
		defer f.pool.Put(ev)
	}
	ok, err = ev.Evaluate(&csn)
	if err != nil {
		return false, fmt.Errorf("filter %q: %w", f.expr, err)
	}
	return ok, nil
}
