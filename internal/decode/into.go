package decode

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	refusedFieldsType   = reflect.TypeFor[RefusedFields]()
)

// RefusedFields is implemented by struct types that know keys a wider
// schema (Consul's) accepts and they do not. RefusedField gets the key in
// canonical form (lower case, no underscores) and returns why it is
// refused, or "" for a key it does not know; the decoder reports that
// reason instead of "unknown field". It is called on the zero value and
// must not depend on the receiver's contents.
type RefusedFields interface {
	RefusedField(key string) (reason string)
}

// decodeValue decodes the canonical generic value g into the value v points to.
func decodeValue(g any, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errorf("", fmt.Sprintf("decode target must be a non-nil pointer, got %T", v))
	}
	return decodeInto("", g, rv.Elem(), 0)
}

// decodeInto decodes the canonical generic value in into out, which must be
// settable. path names in for error messages.
func decodeInto(path string, in any, out reflect.Value, depth int) error {
	if depth > MaxDepth {
		return errorf(path, fmt.Sprintf("nesting is deeper than %d levels", MaxDepth))
	}
	t := out.Type()

	if t.Kind() == reflect.Pointer {
		if in == nil {
			out.Set(reflect.Zero(t))
			return nil
		}
		if out.IsNil() {
			out.Set(reflect.New(t.Elem()))
		}
		return decodeInto(path, in, out.Elem(), depth+1)
	}

	if t.Kind() != reflect.Interface && out.CanAddr() {
		pt := reflect.PointerTo(t)
		if pt.Implements(jsonUnmarshalerType) {
			b, err := json.Marshal(in)
			if err != nil {
				return errorf(path, err.Error())
			}
			if err := out.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
				return errorf(path, err.Error())
			}
			return nil
		}
		if s, ok := in.(string); ok && pt.Implements(textUnmarshalerType) {
			if err := out.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				return errorf(path, err.Error())
			}
			return nil
		}
	}

	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return errorf(path, fmt.Sprintf("cannot decode into a value of type %s", t))
		}
		if in == nil {
			out.Set(reflect.Zero(t))
			return nil
		}
		out.Set(reflect.ValueOf(in))
		return nil

	case reflect.Struct:
		if in == nil {
			return nil
		}
		m, err := asObject(path, in)
		if err != nil {
			return err
		}
		return decodeStruct(path, m, out, depth)

	case reflect.Map:
		if in == nil {
			out.Set(reflect.Zero(t))
			return nil
		}
		m, err := asObject(path, in)
		if err != nil {
			return err
		}
		if out.IsNil() {
			out.Set(reflect.MakeMapWithSize(t, len(m)))
		}
		for _, k := range sortedKeys(m) {
			kpath := fmt.Sprintf("%s[%q]", path, k)
			kv := reflect.New(t.Key()).Elem()
			if err := decodeMapKey(kpath, k, kv); err != nil {
				return err
			}
			ev := reflect.New(t.Elem()).Elem()
			if err := decodeInto(kpath, m[k], ev, depth+1); err != nil {
				return err
			}
			out.SetMapIndex(kv, ev)
		}
		return nil

	case reflect.Slice:
		if in == nil {
			out.Set(reflect.Zero(t))
			return nil
		}
		if s, ok := in.(string); ok && t.Elem().Kind() == reflect.Uint8 {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return errorf(path, "expected base64-encoded bytes: "+err.Error())
			}
			out.SetBytes(b)
			return nil
		}
		l, ok := in.([]any)
		if m, isObject := in.(map[string]any); isObject && objectLike(t.Elem()) {
			// A single object where a list of objects is expected: what
			// one HCL 1 style block inside an object literal produces.
			l, ok = []any{m}, true
		}
		if !ok {
			return typeError(path, "a list", in)
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		for i, e := range l {
			if err := decodeInto(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i), depth+1); err != nil {
				return err
			}
		}
		out.Set(s)
		return nil

	case reflect.Array:
		if in == nil {
			return nil
		}
		l, ok := in.([]any)
		if !ok {
			return typeError(path, "a list", in)
		}
		if len(l) > t.Len() {
			return errorf(path, fmt.Sprintf("expected at most %d elements, got %d", t.Len(), len(l)))
		}
		for i := 0; i < t.Len(); i++ {
			if i >= len(l) {
				out.Index(i).Set(reflect.Zero(t.Elem()))
				continue
			}
			if err := decodeInto(fmt.Sprintf("%s[%d]", path, i), l[i], out.Index(i), depth+1); err != nil {
				return err
			}
		}
		return nil

	case reflect.String:
		if in == nil {
			return nil
		}
		s, ok := in.(string)
		if !ok {
			return typeError(path, "a string", in)
		}
		out.SetString(s)
		return nil

	case reflect.Bool:
		if in == nil {
			return nil
		}
		b, ok := in.(bool)
		if !ok {
			return typeError(path, "true or false", in)
		}
		out.SetBool(b)
		return nil

	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if in == nil {
			return nil
		}
		n, ok := in.(json.Number)
		if !ok {
			return typeError(path, "a whole number", in)
		}
		i, err := parseInt(string(n))
		if err != nil || out.OverflowInt(i) {
			bits := t.Bits()
			return errorf(path, fmt.Sprintf("expected a whole number between %d and %d, got %s",
				int64(-1)<<(bits-1), int64(1<<(bits-1)-1), truncate(string(n))))
		}
		out.SetInt(i)
		return nil

	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if in == nil {
			return nil
		}
		n, ok := in.(json.Number)
		if !ok {
			return typeError(path, "a whole number", in)
		}
		u, err := parseUint(string(n))
		if err != nil || out.OverflowUint(u) {
			return errorf(path, fmt.Sprintf("expected a whole number between 0 and %d, got %s",
				uint64(math.MaxUint64)>>(64-t.Bits()), truncate(string(n))))
		}
		out.SetUint(u)
		return nil

	case reflect.Float32, reflect.Float64:
		if in == nil {
			return nil
		}
		n, ok := in.(json.Number)
		if !ok {
			return typeError(path, "a number", in)
		}
		f, err := strconv.ParseFloat(string(n), t.Bits())
		if err != nil || out.OverflowFloat(f) {
			return errorf(path, fmt.Sprintf("number %s is out of range", truncate(string(n))))
		}
		out.SetFloat(f)
		return nil
	}
	return errorf(path, fmt.Sprintf("cannot decode into a value of type %s", t))
}

// objectLike reports whether values of type t decode from objects.
func objectLike(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		return false
	}
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
}

// asObject returns in as an object. A list holding exactly one object is
// accepted too: that is what a single HCL block produces.
func asObject(path string, in any) (map[string]any, error) {
	switch v := in.(type) {
	case map[string]any:
		return v, nil
	case []any:
		if len(v) == 1 {
			if m, ok := v[0].(map[string]any); ok {
				return m, nil
			}
		}
		if len(v) > 1 {
			return nil, errorf(path, fmt.Sprintf("expected a single object, got a list of %d; set this field once", len(v)))
		}
	}
	return nil, typeError(path, "an object", in)
}

func decodeStruct(path string, m map[string]any, out reflect.Value, depth int) error {
	info := structInfoFor(out.Type())
	set := make(map[*fieldInfo]string, len(m))
	for _, k := range sortedKeys(m) {
		f := info.byKey[canonicalKey(k)]
		if f == nil {
			if reflect.PointerTo(out.Type()).Implements(refusedFieldsType) {
				if why := reflect.New(out.Type()).Interface().(RefusedFields).RefusedField(canonicalKey(k)); why != "" {
					return errorf(path, fmt.Sprintf("%q: %s", truncate(k), why))
				}
			}
			return info.unknownField(path, k)
		}
		if prev, dup := set[f]; dup {
			return errorf(path, fmt.Sprintf("%q and %q both set %s; keep only one", prev, k, f.name))
		}
		set[f] = k
		fpath := f.name
		if path != "" {
			fpath = path + "." + f.name
		}
		fv, err := fieldByIndex(fpath, out, f.index)
		if err != nil {
			return err
		}
		if err := decodeInto(fpath, m[k], fv, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// fieldByIndex is reflect.Value.FieldByIndex that allocates nil embedded
// struct pointers on the way.
func fieldByIndex(path string, v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, errorf(path, fmt.Sprintf("cannot set embedded pointer to unexported struct %s", v.Type().Elem()))
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

func decodeMapKey(path, k string, kv reflect.Value) error {
	if reflect.PointerTo(kv.Type()).Implements(textUnmarshalerType) {
		if err := kv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(k)); err != nil {
			return errorf(path, "invalid key: "+err.Error())
		}
		return nil
	}
	switch kv.Kind() {
	case reflect.String:
		kv.SetString(k)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(k, 10, 64)
		if err != nil || kv.OverflowInt(i) {
			return errorf(path, "expected a whole-number key")
		}
		kv.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, err := strconv.ParseUint(k, 10, 64)
		if err != nil || kv.OverflowUint(u) {
			return errorf(path, "expected a non-negative whole-number key")
		}
		kv.SetUint(u)
		return nil
	}
	return errorf(path, fmt.Sprintf("cannot decode into a map with keys of type %s", kv.Type()))
}

// parseInt parses a JSON number that must be whole, such as "3", "-2" or "1e3".
func parseInt(s string) (int64, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, strconv.ErrRange
	}
	return int64(f), nil
}

func parseUint(s string) (uint64, error) {
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 {
		return 0, strconv.ErrRange
	}
	return uint64(f), nil
}

func typeError(path, want string, got any) error {
	return errorf(path, fmt.Sprintf("expected %s, got %s", want, describe(got)))
}

// describe names a generic value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(truncate(v))
	case bool:
		return "bool " + strconv.FormatBool(v)
	case json.Number:
		return "number " + truncate(string(v))
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "..."
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// canonicalKey is the form in which object keys and field names are compared:
// lower case, without underscores.
func canonicalKey(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// CanonicalKey is the form in which object keys are compared with field
// names: lower case, without underscores ("peer_name" and "PeerName" are
// both "peername"). Callers that match keys themselves use it to keep the
// package's rule.
func CanonicalKey(key string) string { return canonicalKey(key) }

type fieldInfo struct {
	name  string // json name, used in paths and messages
	index []int
	depth int
}

type structInfo struct {
	byKey map[string]*fieldInfo // canonical key -> field
	names []string              // field names in declaration order
}

var structInfoCache sync.Map // reflect.Type -> *structInfo

func structInfoFor(t reflect.Type) *structInfo {
	if v, ok := structInfoCache.Load(t); ok {
		return v.(*structInfo)
	}
	info := &structInfo{byKey: map[string]*fieldInfo{}}
	var aliases []struct {
		key string
		f   *fieldInfo
	}
	var walk func(t reflect.Type, index []int, depth int, seen map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, depth int, seen map[reflect.Type]bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if sf.Anonymous {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && ft.Kind() == reflect.Struct {
					walk(ft, idx, depth+1, seen)
					continue
				}
				if !sf.IsExported() {
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			f := &fieldInfo{name: name, index: idx, depth: depth}
			key := canonicalKey(name)
			if prev, ok := info.byKey[key]; ok && prev.depth <= depth {
				continue
			}
			info.byKey[key] = f
			if alias := sf.Tag.Get("alias"); alias != "" {
				for a := range strings.SplitSeq(alias, ",") {
					if a = strings.TrimSpace(a); a != "" {
						aliases = append(aliases, struct {
							key string
							f   *fieldInfo
						}{canonicalKey(a), f})
					}
				}
			}
		}
	}
	walk(t, nil, 0, map[reflect.Type]bool{})
	for _, a := range aliases {
		if _, taken := info.byKey[a.key]; !taken {
			info.byKey[a.key] = a.f
		}
	}
	// Names in declaration order, skipping fields shadowed by shallower ones.
	var all []*fieldInfo
	seen := map[*fieldInfo]bool{}
	for _, f := range info.byKey {
		if !seen[f] {
			seen[f] = true
			all = append(all, f)
		}
	}
	sort.Slice(all, func(i, j int) bool { return lessIndex(all[i].index, all[j].index) })
	for _, f := range all {
		info.names = append(info.names, f.name)
	}
	v, _ := structInfoCache.LoadOrStore(t, info)
	return v.(*structInfo)
}

func lessIndex(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func (info *structInfo) unknownField(path, key string) error {
	if s := info.suggest(key); s != "" {
		return errorf(path, fmt.Sprintf("unknown field %q; did you mean %q?", truncate(key), s))
	}
	if len(info.names) == 0 {
		return errorf(path, fmt.Sprintf("unknown field %q; this object takes no fields", truncate(key)))
	}
	return errorf(path, fmt.Sprintf("unknown field %q; valid fields are %s", truncate(key), strings.Join(info.names, ", ")))
}

// suggest returns the field name closest to key, if one is close enough to be
// a likely typo.
func (info *structInfo) suggest(key string) string {
	return Suggest(key, info.names)
}

// Suggest returns the name in names closest to key, compared as keys are
// matched, when one is close enough to be a likely typo; else "".
func Suggest(key string, names []string) string {
	ck := canonicalKey(key)
	if len(ck) > 64 {
		return ""
	}
	best, bestDist := "", 0
	for _, name := range names {
		cn := canonicalKey(name)
		d := levenshtein(ck, cn)
		limit := max(1, min(len(ck), len(cn))/3)
		if d <= limit && (best == "" || d < bestDist) {
			best, bestDist = name, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
