package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/peerd/peerd/internal/decode"
)

// origins records where settings got their values, for Validate's
// messages. Copies of a Config share it.
type origins struct {
	// settings maps a setting's name to the file and key ("a.hcl:
	// ports.http") or the flag ("-http-addr") that set it last.
	settings map[string]string
	// defs maps each service or check definition read from a file (a
	// *state.ServiceDefinition or *state.CheckType) to where it was
	// defined ("a.hcl: service[0]").
	defs map[any]string
}

func (c *Config) origins() *origins {
	if c.origin == nil {
		c.origin = &origins{settings: map[string]string{}, defs: map[any]string{}}
	}
	return c.origin
}

// where names the setting called name for a message: the file and key or
// the flag that set it, else its flag.
func (c *Config) where(name string) string {
	if c.origin != nil {
		if w, ok := c.origin.settings[name]; ok {
			return w
		}
	}
	for _, s := range settings {
		if s.name == name && s.flag {
			return "-" + name
		}
	}
	return name
}

// originOf returns where the setting called name was set, if a file or
// flag set it.
func (c *Config) originOf(name string) (string, bool) {
	if c.origin == nil {
		return "", false
	}
	w, ok := c.origin.settings[name]
	return w, ok
}

// defWhere names a service or check definition for a message: where a
// file defined it, else its kind and name.
func (c *Config) defWhere(def any, kind, name string) string {
	if c.origin != nil {
		if w, ok := c.origin.defs[def]; ok {
			return fmt.Sprintf("%s %q", w, name)
		}
	}
	return fmt.Sprintf("%s %q from config", kind, name)
}

// Parse reads the command line of `peerd agent` into a Config, in order of
// precedence: CommandLineConfig's defaults, -dev's, the config files
// (-config-file and -config-dir, all in name order), then the flags given.
// Every flag is bound to the same Config field as the file key of its
// setting. Parse does not validate: agent.Start does, with Validate.
func Parse(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("peerd agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The flags write into their own Config; those given on the command
	// line are copied over the files' values below.
	flags := CommandLineConfig()
	for i := range settings {
		if s := &settings[i]; s.flag {
			s.bindFlag(fs, &flags)
		}
	}
	var files listFlag
	fs.Var(&files, "config-dir", "directory of *.hcl/*.json config files, incl. service definitions (repeatable)")
	fs.Var(&files, "config-file", "one config file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: flags start with '-'", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	cfg := CommandLineConfig()
	if flags.Dev {
		cfg.ApplyDev()
	}
	if err := cfg.LoadFiles(files...); err != nil {
		return Config{}, err
	}
	for i := range settings {
		s := &settings[i]
		if !s.flag || !given[s.name] {
			continue
		}
		switch p := s.ptr(&cfg).(type) {
		case *map[string]string: // -node-meta adds to the files' metadata
			if *p == nil {
				*p = map[string]string{}
			}
			maps.Copy(*p, *s.ptr(&flags).(*map[string]string))
		default:
			reflect.ValueOf(p).Elem().Set(reflect.ValueOf(s.ptr(&flags)).Elem())
		}
		cfg.origins().settings[s.name] = "-" + s.name
	}
	return cfg, nil
}

// bindFlag defines the flag of s on fs, writing to the field of s in c; its
// default is the field's value.
func (s *setting) bindFlag(fs *flag.FlagSet, c *Config) {
	switch p := s.ptr(c).(type) {
	case *string:
		fs.StringVar(p, s.name, *p, s.usage)
	case *bool:
		fs.BoolVar(p, s.name, *p, s.usage)
	case *int:
		fs.IntVar(p, s.name, *p, s.usage)
	case *time.Duration:
		fs.DurationVar(p, s.name, *p, s.usage)
	case *[]string:
		*p = nil // given values replace the files'
		fs.Var((*listFlag)(p), s.name, s.usage)
	case *map[string]string:
		*p = nil
		fs.Var((*metaFlag)(p), s.name, s.usage)
	default:
		panic(fmt.Sprintf("setting %s: no flag for a field of type %T", s.name, p))
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// metaFlag is a repeatable key:value flag.
type metaFlag map[string]string

func (m *metaFlag) String() string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(*m)) {
		kv = append(kv, k+":"+(*m)[k])
	}
	return strings.Join(kv, ",")
}

func (m *metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || k == "" {
		return fmt.Errorf("-node-meta %q: use key:value", v)
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = val
	return nil
}

// LoadFiles reads config files and directories (every *.hcl and *.json in a
// directory) into c, all files in name order. Later files override earlier
// ones; services and checks accumulate. It reads every file and reports
// every problem, each naming the file and key; the keys that are fine are
// applied all the same.
func (c *Config) LoadFiles(paths ...string) error {
	var files []string
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("config %s: %w", p, err))
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read config dir %s: %w", p, err))
			continue
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".hcl" || ext == ".json") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	slices.Sort(files)
	for _, f := range files {
		errs = append(errs, c.loadFile(f)...)
	}
	return errors.Join(errs...)
}

// loadFile applies one file's keys to c, in the order of the settings table.
func (c *Config) loadFile(path string) []error {
	b, err := os.ReadFile(path)
	if err != nil {
		return []error{fmt.Errorf("read config %s: %w", path, err)}
	}
	g, err := decode.Generic(b, path)
	if err != nil {
		return []error{fmt.Errorf("config %s: %w", path, err)}
	}
	var errs []error
	fail := func(err error) { errs = append(errs, fmt.Errorf("config %s: %w", path, err)) }
	top := indexKeys("", g, fail)
	// A block (ports { ... }) is an object whose keys are settings too; a
	// block may hold blocks (acl { tokens { ... } }), named "acl.tokens".
	blocks := map[string]keyIndex{}
	var block func(name string) keyIndex
	block = func(name string) keyIndex {
		if idx, seen := blocks[name]; seen {
			return idx
		}
		blocks[name] = nil
		parent, leaf := top, name
		if i := strings.LastIndex(name, "."); i >= 0 {
			parent, leaf = block(name[:i]), name[i+1:]
		}
		raw, ok := parent.take(leaf)
		if !ok || raw == nil {
			return nil
		}
		m, err := decodeValue[map[string]any](name, raw)
		if err != nil {
			fail(err)
			return nil
		}
		blocks[name] = indexKeys(name+".", m, fail)
		return blocks[name]
	}
	for i := range settings {
		s := &settings[i]
		if s.key == "" {
			continue
		}
		idx, leaf := top, s.key
		if i := strings.LastIndex(s.key, "."); i >= 0 {
			idx, leaf = block(s.key[:i]), s.key[i+1:]
		}
		raw, ok := idx.take(leaf)
		if !ok || raw == nil {
			continue
		}
		if s.fromFile != nil {
			err = s.fromFile(c, path, s.key, raw)
		} else {
			err = s.decodeInto(c, raw)
		}
		if err != nil {
			fail(err)
			continue
		}
		c.origins().settings[s.name] = path + ": " + s.key
	}
	for _, k := range top.unused() {
		fail(unknownKey("", k))
	}
	for _, name := range slices.Sorted(maps.Keys(blocks)) {
		for _, k := range blocks[name].unused() {
			fail(unknownKey(name+".", k))
		}
	}
	return errs
}

// unknownKey reports a key no setting has, suggesting the closest one.
func unknownKey(prefix, key string) error {
	var names []string
	for _, s := range settings {
		// A key of the block, or the name of a block inside it.
		if rest, ok := strings.CutPrefix(s.key, prefix); ok && s.key != "" {
			if g, _, _ := strings.Cut(rest, "."); !slices.Contains(names, g) {
				names = append(names, g)
			}
		}
	}
	if s := decode.Suggest(key, names); s != "" {
		return fmt.Errorf("%s%s: unknown key; did you mean %q?", prefix, key, prefix+s)
	}
	if prefix != "" {
		return fmt.Errorf("%s%s: unknown key; %s takes %s", prefix, key, strings.TrimSuffix(prefix, "."), strings.Join(names, ", "))
	}
	return fmt.Errorf("%s: unknown key", key)
}

// keyIndex is one object of a file by canonical key (decode.CanonicalKey),
// with the keys taken by a setting marked.
type keyIndex map[string]*keyEntry

type keyEntry struct {
	key   string // as written
	raw   any
	taken bool
}

// indexKeys indexes m, reporting keys that are the same but for case or
// underscores.
func indexKeys(prefix string, m map[string]any, fail func(error)) keyIndex {
	idx := keyIndex{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ck := decode.CanonicalKey(k)
		if prev, dup := idx[ck]; dup {
			fail(fmt.Errorf("%s%s: %q and %q are the same key; keep only one", prefix, k, prev.key, k))
			continue
		}
		idx[ck] = &keyEntry{key: k, raw: m[k]}
	}
	return idx
}

// take returns the value of key and marks it used.
func (idx keyIndex) take(key string) (any, bool) {
	e, ok := idx[decode.CanonicalKey(key)]
	if !ok {
		return nil, false
	}
	e.taken = true
	return e.raw, true
}

// unused returns the keys no setting took, as written, sorted.
func (idx keyIndex) unused() []string {
	var out []string
	for _, e := range idx {
		if !e.taken {
			out = append(out, e.key)
		}
	}
	slices.Sort(out)
	return out
}

// decodeInto decodes a file's value for s into its field, which keeps its
// value when the file's is bad.
func (s *setting) decodeInto(c *Config, raw any) error {
	switch p := s.ptr(c).(type) {
	case *string:
		return setFrom(p, s.key, raw)
	case *bool:
		return setFrom(p, s.key, raw)
	case *int:
		return setFrom(p, s.key, raw)
	case *time.Duration:
		d, err := decodeValue[decode.Duration](s.key, raw)
		if err == nil {
			*p = d.D()
		}
		return err
	case *[]string:
		return setFrom(p, s.key, raw)
	case *map[string]string:
		return setFrom(p, s.key, raw)
	default:
		panic(fmt.Sprintf("setting %s: no file decoding for a field of type %T", s.key, p))
	}
}

// setFrom decodes raw into *p, leaving it unchanged on an error.
func setFrom[T any](p *T, key string, raw any) error {
	v, err := decodeValue[T](key, raw)
	if err == nil {
		*p = v
	}
	return err
}

// decodeValue decodes one value of a file with the decode package's rules,
// its errors naming key.
func decodeValue[T any](key string, raw any) (T, error) {
	var holder struct{ V T }
	err := decode.Into(map[string]any{"V": raw}, &holder)
	if de, ok := errors.AsType[*decode.Error](err); ok {
		de.Path = key + strings.TrimPrefix(de.Path, "V")
	}
	return holder.V, err
}

func replacePort(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(port))
}

func replaceHost(addr, host string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = "0"
	}
	return net.JoinHostPort(host, port)
}
