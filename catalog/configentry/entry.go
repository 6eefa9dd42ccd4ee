package configentry

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/peerd/peerd/internal/decode"
)

// Config entry kinds, as Consul spells them.
const (
	ExportedServices  = "exported-services"
	ServiceIntentions = "service-intentions"
	ServiceRouter     = "service-router"
	ServiceSplitter   = "service-splitter"
	ServiceResolver   = "service-resolver"
	ServiceDefaults   = "service-defaults"
	ProxyDefaults     = "proxy-defaults"
	MeshConfig        = "mesh"
)

// Fixed entry names.
const (
	// ProxyConfigGlobal is the only name a proxy-defaults entry may have.
	ProxyConfigGlobal = "global"
	// MeshConfigMesh is the only name a mesh entry may have.
	MeshConfigMesh = "mesh"
	// DefaultPartition is the partition name; an exported-services entry is
	// named after its partition.
	DefaultPartition = "default"
	// WildcardSpecifier matches every name where wildcards are allowed.
	WildcardSpecifier = "*"
)

// RaftIndex records the raft indexes at which an entry was created and last
// modified. Embedded, it gives the flat CreateIndex and ModifyIndex JSON
// fields Consul's API uses.
type RaftIndex struct {
	CreateIndex uint64
	ModifyIndex uint64
}

// Entry is a config entry of any kind. All implementations are pointers to
// the structs of this package.
type Entry interface {
	// GetKind returns the entry's kind constant, whatever its Kind field holds.
	GetKind() string
	GetName() string
	// GetPartition and GetNamespace return the entry's partition and
	// namespace, "" when unset (meaning the default).
	GetPartition() string
	GetNamespace() string
	GetMeta() map[string]string
	GetRaftIndex() *RaftIndex
	// Normalize fills the defaults Consul fills (Kind, fixed names, intention
	// source types and precedence, letter case of protocols and methods,
	// rounding of split weights). Empty namespaces and partitions stay empty.
	// It is idempotent and never fails; nil list elements are left for
	// Validate to report.
	Normalize()
	// Validate applies Consul's rules for the kind. Errors are *decode.Error
	// values naming the field path and the fix.
	Validate() error
}

var kinds = []string{
	ExportedServices,
	ServiceIntentions,
	ServiceRouter,
	ServiceSplitter,
	ServiceResolver,
	ServiceDefaults,
	ProxyDefaults,
	MeshConfig,
}

// Kinds returns the kinds New accepts.
func Kinds() []string {
	return append([]string(nil), kinds...)
}

// New returns an empty entry of the given kind with its Kind field set.
func New(kind string) (Entry, error) {
	switch kind {
	case ExportedServices:
		return &ExportedServicesConfigEntry{Kind: kind}, nil
	case ServiceIntentions:
		return &ServiceIntentionsConfigEntry{Kind: kind}, nil
	case ServiceRouter:
		return &ServiceRouterConfigEntry{Kind: kind}, nil
	case ServiceSplitter:
		return &ServiceSplitterConfigEntry{Kind: kind}, nil
	case ServiceResolver:
		return &ServiceResolverConfigEntry{Kind: kind}, nil
	case ServiceDefaults:
		return &ServiceConfigEntry{Kind: kind}, nil
	case ProxyDefaults:
		return &ProxyConfigEntry{Kind: kind}, nil
	case MeshConfig:
		return &MeshConfigEntry{Kind: kind}, nil
	}
	msg := fmt.Sprintf("unknown config entry kind %q; valid kinds are %s", kind, strings.Join(kinds, ", "))
	for _, k := range kinds {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(strings.TrimSpace(kind), "_", "-")) {
			msg = fmt.Sprintf("unknown config entry kind %q; did you mean %q?", kind, k)
		}
	}
	return nil, &decode.Error{Path: "Kind", Msg: msg}
}

// Decode reads a config entry of any kind from a JSON or HCL document (JSON
// if its first non-space byte is '{'). It reads the Kind key (matched
// case-insensitively and ignoring underscores), decodes the document strictly
// into that kind's struct and normalizes it. It does not validate.
func Decode(data []byte, filename string) (Entry, error) {
	raw, err := decode.Generic(data, filename)
	if err != nil {
		return nil, fmt.Errorf("decode config entry: %w", err)
	}
	return fromGeneric(raw)
}

// DecodeJSON is Decode for a JSON document.
func DecodeJSON(data []byte) (Entry, error) {
	if !isJSONObject(data) {
		return nil, fmt.Errorf("decode config entry: %w", &decode.Error{Msg: "expected a JSON object"})
	}
	raw, err := decode.Generic(data, "")
	if err != nil {
		return nil, fmt.Errorf("decode config entry: %w", err)
	}
	return fromGeneric(raw)
}

// DecodeKind decodes JSON of a known kind, such as json.Marshal of an entry
// stored in the raft log. A Kind field, if present, must match kind. The entry
// is neither normalized nor validated.
func DecodeKind(kind string, data []byte) (Entry, error) {
	e, err := New(kind)
	if err != nil {
		return nil, fmt.Errorf("decode config entry: %w", err)
	}
	if !isJSONObject(data) {
		return nil, fmt.Errorf("decode %s config entry: %w", kind, &decode.Error{Msg: "expected a JSON object"})
	}
	if err := decode.JSON(data, e); err != nil {
		return nil, fmt.Errorf("decode %s config entry: %w", kind, err)
	}
	k := kindField(e)
	switch *k {
	case "":
		*k = kind
	case kind:
	default:
		return nil, fmt.Errorf("decode %s config entry: %w", kind,
			&decode.Error{Path: "Kind", Msg: fmt.Sprintf("got kind %q, want %q", *k, kind)})
	}
	return e, nil
}

// isJSONObject reports whether the first non-space byte of data is '{'.
func isJSONObject(data []byte) bool {
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

func fromGeneric(raw map[string]any) (Entry, error) {
	kind, err := kindOf(raw)
	if err != nil {
		return nil, fmt.Errorf("decode config entry: %w", err)
	}
	e, err := New(kind)
	if err != nil {
		return nil, fmt.Errorf("decode config entry: %w", err)
	}
	if err := decode.Into(raw, e); err != nil {
		return nil, fmt.Errorf("decode %s config entry: %w", kind, err)
	}
	e.Normalize()
	return e, nil
}

// kindOf finds the Kind key of a generic document.
func kindOf(raw map[string]any) (string, error) {
	var key string
	for _, k := range sortedKeys(raw) {
		if strings.ToLower(strings.ReplaceAll(k, "_", "")) != "kind" {
			continue
		}
		if key != "" {
			return "", &decode.Error{Msg: fmt.Sprintf("%q and %q both set Kind; keep only one", key, k)}
		}
		key = k
	}
	if key == "" {
		return "", &decode.Error{Msg: fmt.Sprintf("missing Kind; set it to one of %s", strings.Join(kinds, ", "))}
	}
	s, ok := raw[key].(string)
	if !ok {
		return "", &decode.Error{Path: "Kind", Msg: fmt.Sprintf("expected a string, one of %s", strings.Join(kinds, ", "))}
	}
	return s, nil
}

// kindField returns a pointer to e's Kind field.
func kindField(e Entry) *string {
	switch e := e.(type) {
	case *ExportedServicesConfigEntry:
		return &e.Kind
	case *ServiceIntentionsConfigEntry:
		return &e.Kind
	case *ServiceRouterConfigEntry:
		return &e.Kind
	case *ServiceSplitterConfigEntry:
		return &e.Kind
	case *ServiceResolverConfigEntry:
		return &e.Kind
	case *ServiceConfigEntry:
		return &e.Kind
	case *ProxyConfigEntry:
		return &e.Kind
	case *MeshConfigEntry:
		return &e.Kind
	}
	return new(string)
}

// Protocol returns the protocol an entry sets: service-defaults' Protocol, or
// the "protocol" key of proxy-defaults' Config. It returns "" for other kinds
// and when no protocol is set.
func Protocol(e Entry) string {
	switch e := e.(type) {
	case *ServiceConfigEntry:
		return e.Protocol
	case *ProxyConfigEntry:
		p, _ := e.Config["protocol"].(string)
		return strings.ToLower(p)
	}
	return ""
}

// compile-time checks
var (
	_ Entry = (*ExportedServicesConfigEntry)(nil)
	_ Entry = (*ServiceIntentionsConfigEntry)(nil)
	_ Entry = (*ServiceRouterConfigEntry)(nil)
	_ Entry = (*ServiceSplitterConfigEntry)(nil)
	_ Entry = (*ServiceResolverConfigEntry)(nil)
	_ Entry = (*ServiceConfigEntry)(nil)
	_ Entry = (*ProxyConfigEntry)(nil)
	_ Entry = (*MeshConfigEntry)(nil)
)
