package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// MaxDepth is the deepest nesting of objects and lists (and HCL blocks) a
// document may have.
const MaxDepth = 64

var utf8BOM = []byte("\xef\xbb\xbf")

// looksLikeJSON reports whether the first non-space byte of data is '{' or '['.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimLeft(bytes.TrimPrefix(data, utf8BOM), " \t\r\n")
	return len(data) > 0 && (data[0] == '{' || data[0] == '[')
}

// position formats a byte offset in data as "file:line,col" when filename is
// set, or "line L, column C" when it is not.
func position(data []byte, filename string, off int64) string {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	prefix := data[:off]
	line := bytes.Count(prefix, []byte("\n")) + 1
	col := utf8.RuneCount(prefix[bytes.LastIndexByte(prefix, '\n')+1:]) + 1
	if filename != "" {
		return fmt.Sprintf("%s:%d,%d", filename, line, col)
	}
	return fmt.Sprintf("line %d, column %d", line, col)
}

// parseJSON reads a JSON document into a generic value. Numbers become
// json.Number; a key repeated within one object is an error.
func parseJSON(data []byte, filename string) (any, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := &jsonParser{dec: dec, data: data, filename: filename}
	v, err := p.value("", 0)
	if err != nil {
		return nil, err
	}
	off := p.nextOffset()
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.syntaxError(err, off)
		}
		return nil, errorf("", position(data, filename, off)+": unexpected data after the end of the document")
	}
	return v, nil
}

type jsonParser struct {
	dec      *json.Decoder
	data     []byte
	filename string
}

// nextOffset returns the offset at which the next token starts: past
// white space and past a ',' or ':' the decoder has not consumed yet.
func (p *jsonParser) nextOffset() int64 {
	off := p.skipSpace(p.dec.InputOffset())
	if off < int64(len(p.data)) && (p.data[off] == ',' || p.data[off] == ':') {
		off = p.skipSpace(off + 1)
	}
	return off
}

func (p *jsonParser) skipSpace(off int64) int64 {
	for off < int64(len(p.data)) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n':
			off++
			continue
		}
		break
	}
	return off
}

func (p *jsonParser) syntaxError(err error, off int64) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return errorf("", position(p.data, p.filename, se.Offset)+": "+se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errorf("", position(p.data, p.filename, int64(len(p.data)))+": unexpected end of JSON input")
	default:
		return errorf("", position(p.data, p.filename, off)+": "+err.Error())
	}
}

func (p *jsonParser) token() (json.Token, int64, error) {
	off := p.nextOffset()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, off, p.syntaxError(err, off)
	}
	return tok, off, nil
}

func (p *jsonParser) value(path string, depth int) (any, error) {
	tok, off, err := p.token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxDepth {
			return nil, errorf(path, fmt.Sprintf("%s: nesting is deeper than %d levels", position(p.data, p.filename, off), MaxDepth))
		}
		switch t {
		case '{':
			m := map[string]any{}
			for p.dec.More() {
				ktok, koff, err := p.token()
				if err != nil {
					return nil, err
				}
				k, ok := ktok.(string)
				if !ok { // json.Decoder guarantees a string key; be defensive.
					return nil, errorf(path, position(p.data, p.filename, koff)+": expected an object key")
				}
				if _, dup := m[k]; dup {
					return nil, errorf(path, fmt.Sprintf("%s: key %q is set more than once", position(p.data, p.filename, koff), k))
				}
				v, err := p.value(joinKey(path, k), depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, _, err := p.token(); err != nil { // '}'
				return nil, err
			}
			return m, nil
		case '[':
			l := []any{}
			for p.dec.More() {
				v, err := p.value(fmt.Sprintf("%s[%d]", path, len(l)), depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, _, err := p.token(); err != nil { // ']'
				return nil, err
			}
			return l, nil
		}
		return nil, errorf(path, fmt.Sprintf("%s: unexpected %q", position(p.data, p.filename, off), rune(t)))
	case string, bool, json.Number, nil:
		return t, nil
	}
	return nil, errorf(path, fmt.Sprintf("%s: unexpected token %v", position(p.data, p.filename, off), tok))
}

// joinKey appends an object key to a path, in the form used before the
// target type is known.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// parseHCL reads an HCL native-syntax document into a generic object.
func parseHCL(data []byte, filename string) (map[string]any, error) {
	if filename == "" {
		filename = "<input>"
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	file, diags := hclsyntax.ParseConfig(data, filename, hcl.InitialPos)
	if diags.HasErrors() {
		// Consul's documentation (and HCL 1) write nested objects inside
		// object literals as blocks: Routes = [{ Match { HTTP { ... } } }].
		// Retry with those rewritten. The rewrite only inserts '=' where
		// one is required, so its errors are the ones left to fix.
		compat, changed := hcl1Compat(data, filename)
		if !changed {
			return nil, errorf("", diags.Error())
		}
		file, diags = hclsyntax.ParseConfig(compat, filename, hcl.InitialPos)
		if diags.HasErrors() {
			return nil, errorf("", diags.Error())
		}
	}
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return nil, errorf("", fmt.Sprintf("%s: unexpected HCL body type %T", filename, file.Body))
	}
	return hclBody(body, "", 0)
}

func hclBody(body *hclsyntax.Body, path string, depth int) (map[string]any, error) {
	if depth > MaxDepth {
		return nil, errorf(path, fmt.Sprintf("%s: nesting is deeper than %d levels", body.SrcRange, MaxDepth))
	}
	out := make(map[string]any, len(body.Attributes)+len(body.Blocks))

	names := make([]string, 0, len(body.Attributes))
	for name := range body.Attributes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		attr := body.Attributes[name]
		apath := joinKey(path, name)
		if err := checkDuplicateKeys(attr.Expr, apath); err != nil {
			return nil, err
		}
		val, diags := attr.Expr.Value(nil)
		if diags.HasErrors() {
			return nil, errorf(apath, diags.Error())
		}
		v, err := ctyToGo(val, apath, depth+1)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}

	labelCount := map[string]int{}
	for _, blk := range body.Blocks {
		bpath := joinKey(path, blk.Type)
		if _, ok := body.Attributes[blk.Type]; ok {
			return nil, errorf(bpath, fmt.Sprintf("%s: %q is set both as an attribute and as a block; use one form", blk.TypeRange, blk.Type))
		}
		if n, seen := labelCount[blk.Type]; seen && n != len(blk.Labels) {
			return nil, errorf(bpath, fmt.Sprintf("%s: every %q block must have the same number of labels (%d)", blk.TypeRange, blk.Type, n))
		}
		labelCount[blk.Type] = len(blk.Labels)
		if depth+len(blk.Labels) > MaxDepth {
			return nil, errorf(bpath, fmt.Sprintf("%s: nesting is deeper than %d levels", blk.TypeRange, MaxDepth))
		}

		if len(blk.Labels) == 0 {
			obj, err := hclBody(blk.Body, fmt.Sprintf("%s[%d]", bpath, hclListLen(out[blk.Type])), depth+1)
			if err != nil {
				return nil, err
			}
			list, _ := out[blk.Type].([]any)
			out[blk.Type] = append(list, obj)
			continue
		}

		// Labelled blocks nest: foo "a" "b" { } becomes foo.a.b = { }.
		parent, _ := out[blk.Type].(map[string]any)
		if parent == nil {
			parent = map[string]any{}
			out[blk.Type] = parent
		}
		lpath := bpath
		for _, label := range blk.Labels[:len(blk.Labels)-1] {
			lpath = fmt.Sprintf("%s[%q]", lpath, label)
			next, _ := parent[label].(map[string]any)
			if next == nil {
				next = map[string]any{}
				parent[label] = next
			}
			parent = next
		}
		last := blk.Labels[len(blk.Labels)-1]
		lpath = fmt.Sprintf("%s[%q]", lpath, last)
		if _, dup := parent[last]; dup {
			return nil, errorf(lpath, fmt.Sprintf("%s: duplicate %q block", blk.TypeRange, blk.Type))
		}
		obj, err := hclBody(blk.Body, lpath, depth+1+len(blk.Labels))
		if err != nil {
			return nil, err
		}
		parent[last] = obj
	}
	return out, nil
}

func hclListLen(v any) int {
	l, _ := v.([]any)
	return len(l)
}

// maxExponent bounds the binary exponent of numbers read from HCL, so that a
// literal such as 1e999999999 cannot turn into a gigantic decimal string.
const maxExponent = 4096

func ctyToGo(val cty.Value, path string, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errorf(path, fmt.Sprintf("nesting is deeper than %d levels", MaxDepth))
	}
	val, _ = val.UnmarkDeep()
	if !val.IsKnown() {
		return nil, errorf(path, "value is not known; variables and functions are not supported")
	}
	if val.IsNull() {
		return nil, nil
	}
	ty := val.Type()
	switch {
	case ty == cty.String:
		return val.AsString(), nil
	case ty == cty.Bool:
		return val.True(), nil
	case ty == cty.Number:
		return bigFloatNumber(val.AsBigFloat(), path)
	case ty.IsListType(), ty.IsSetType(), ty.IsTupleType():
		l := make([]any, 0, val.LengthInt())
		for it := val.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			v, err := ctyToGo(ev, fmt.Sprintf("%s[%d]", path, len(l)), depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case ty.IsMapType(), ty.IsObjectType():
		m := make(map[string]any, val.LengthInt())
		for it := val.ElementIterator(); it.Next(); {
			kv, ev := it.Element()
			k := kv.AsString()
			v, err := ctyToGo(ev, joinKey(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	}
	return nil, errorf(path, fmt.Sprintf("unsupported value of type %s", ty.FriendlyName()))
}

func bigFloatNumber(f *big.Float, path string) (json.Number, error) {
	if f.IsInf() {
		return "", errorf(path, "number is infinite")
	}
	if f.Sign() != 0 {
		if exp := f.MantExp(nil); exp > maxExponent || exp < -maxExponent {
			return "", errorf(path, "number is out of range")
		}
	}
	return json.Number(f.Text('f', -1)), nil
}

// normalizeGeneric deep-copies a caller-supplied generic value into the
// canonical form the decoder walks: map[string]any, []any, string, bool,
// json.Number and nil. Other Go numbers, named scalar types, string-keyed
// maps, slices and pointers are converted; anything else is an error.
func normalizeGeneric(in any, path string, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errorf(path, fmt.Sprintf("nesting is deeper than %d levels", MaxDepth))
	}
	switch v := in.(type) {
	case nil:
		return nil, nil
	case string, bool:
		return v, nil
	case json.Number:
		if !validJSONNumber(string(v)) {
			return nil, errorf(path, fmt.Sprintf("invalid number %q", string(v)))
		}
		return v, nil
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			n, err := normalizeGeneric(e, joinKey(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = n
		}
		return m, nil
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			n, err := normalizeGeneric(e, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			l[i] = n
		}
		return l, nil
	}

	rv := reflect.ValueOf(in)
	switch rv.Kind() {
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return json.Number(strconv.FormatInt(rv.Int(), 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return json.Number(strconv.FormatUint(rv.Uint(), 10)), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, errorf(path, fmt.Sprintf("number %v cannot be represented", f))
		}
		bits := 64
		if rv.Kind() == reflect.Float32 {
			bits = 32
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, bits)), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return normalizeGeneric(rv.Elem().Interface(), path, depth)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if rv.IsNil() {
			return nil, nil
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			k := it.Key().String()
			n, err := normalizeGeneric(it.Value().Interface(), joinKey(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = n
		}
		return m, nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		l := make([]any, rv.Len())
		for i := range l {
			n, err := normalizeGeneric(rv.Index(i).Interface(), fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			l[i] = n
		}
		return l, nil
	}
	return nil, errorf(path, fmt.Sprintf("unsupported value of Go type %T", in))
}

// validJSONNumber reports whether s is a number in JSON syntax.
func validJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
