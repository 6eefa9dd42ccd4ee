package decode

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// hcl1Compat rewrites `key { ... }` inside object literals, which HCL 1 and
// Consul's documentation accept but HCL 2 does not, into `key = { ... }`. It
// only touches a key immediately followed by '{' where a '=' is required, so
// it never changes the meaning of valid HCL 2. When there is white space
// before the '{', the '=' replaces its last byte so that error positions do
// not move. It reports whether it changed anything.
func hcl1Compat(src []byte, filename string) ([]byte, bool) {
	toks, diags := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return src, false
	}
	type frameKind int
	const (
		body   frameKind = iota // a file or block body
		object                  // an object literal
		nested                  // a list, parentheses or a template interpolation
	)
	type frame struct {
		kind frameKind
		attr bool // body frames: inside an attribute's expression
	}
	stack := []frame{{kind: body}}
	var at []int // byte offsets of the '{' that need a '=' before them
	for i, t := range toks {
		top := &stack[len(stack)-1]
		switch t.Type {
		case hclsyntax.TokenEqual:
			if top.kind == body {
				top.attr = true
			}
		case hclsyntax.TokenNewline:
			if top.kind == body {
				top.attr = false
			}
		case hclsyntax.TokenOBrace:
			if top.kind == body && !top.attr {
				stack = append(stack, frame{kind: body}) // a block body
				continue
			}
			if top.kind == object && i > 0 {
				switch toks[i-1].Type {
				case hclsyntax.TokenIdent, hclsyntax.TokenCQuote:
					at = append(at, t.Range.Start.Byte)
				}
			}
			stack = append(stack, frame{kind: object})
		case hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			stack = append(stack, frame{kind: nested})
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenTemplateSeqEnd:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(at) == 0 {
		return src, false
	}
	out := make([]byte, 0, len(src)+len(at))
	last := 0
	for _, off := range at {
		if off < last || off > len(src) {
			continue
		}
		if off > 0 && (src[off-1] == ' ' || src[off-1] == '\t') && off-1 >= last {
			out = append(out, src[last:off-1]...)
			out = append(out, '=')
		} else {
			out = append(out, src[last:off]...)
			out = append(out, '=')
		}
		last = off
	}
	out = append(out, src[last:]...)
	return out, true
}

// checkDuplicateKeys reports a key set twice in an object literal, which HCL
// would otherwise resolve silently in favour of the last one.
func checkDuplicateKeys(expr hclsyntax.Expression, path string) error {
	var err error
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		oc, ok := n.(*hclsyntax.ObjectConsExpr)
		if !ok || err != nil {
			return nil
		}
		seen := make(map[string]bool, len(oc.Items))
		for _, item := range oc.Items {
			kv, diags := item.KeyExpr.Value(nil)
			kv, _ = kv.UnmarkDeep()
			if diags.HasErrors() || !kv.IsWhollyKnown() || kv.IsNull() || kv.Type() != cty.String {
				continue
			}
			k := kv.AsString()
			if seen[k] {
				err = errorf(path, fmt.Sprintf("%s: key %q is set more than once in this object; to give several values use a list", item.KeyExpr.Range(), truncate(k)))
				return nil
			}
			seen[k] = true
		}
		return nil
	})
	return err
}
