package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/peerd/peerd/internal/decode"
)

// errNoServiceDefinition is returned for a file that holds none of the
// shapes serviceDefinitions accepts.
var errNoServiceDefinition = errors.New(`no service definition found: want a "service" block or object, a "services" list, or a bare definition with a name`)

// loadServiceFile reads a JSON or HCL file and returns the service
// definitions it holds; see serviceDefinitions.
func loadServiceFile(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read service file: %w", err)
	}
	doc, err := decode.Generic(data, path)
	if err != nil {
		return nil, decodeError("service file", path, err)
	}
	defs, err := serviceDefinitions(doc)
	if err != nil {
		return nil, fmt.Errorf("service file %s: %w", path, err)
	}
	return defs, nil
}

// serviceDefinitions finds the service definitions in a decoded file, in
// the shapes Consul accepts:
//
//	service { name = "web" ... }          HCL block (decoded as a list of one)
//	{"service": {"name": "web", ...}}     JSON object
//	{"services": [{...}, {...}]}          list (HCL: repeated services blocks)
//	{"name": "web", "port": 80}           bare definition
//
// Keys match without regard to case ("Service", "Name"). A file may hold
// both service and services; other top-level keys are ignored when one of
// them is present. Each definition is returned as decoded, to be sent to
// the agent as JSON, and must have a name.
func serviceDefinitions(doc map[string]any) ([]map[string]any, error) {
	var defs []map[string]any
	found := false
	for _, key := range []string{"service", "services"} {
		v, ok := lookupKey(doc, key)
		if !ok {
			continue
		}
		found = true
		objs, err := objectList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		defs = append(defs, objs...)
	}
	if !found {
		if _, ok := lookupKey(doc, "name"); !ok {
			return nil, errNoServiceDefinition
		}
		defs = []map[string]any{doc}
	}
	if len(defs) == 0 {
		return nil, errNoServiceDefinition
	}
	for i, d := range defs {
		if defString(d, "name") == "" {
			return nil, fmt.Errorf("service definition %d has no name", i+1)
		}
	}
	return defs, nil
}

// objectList accepts one object or a list of objects.
func objectList(v any) ([]map[string]any, error) {
	switch v := v.(type) {
	case map[string]any:
		return []map[string]any{v}, nil
	case []map[string]any:
		return v, nil
	case []any:
		out := make([]map[string]any, 0, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("item %d is %s, want an object", i+1, jsonKind(e))
			}
			out = append(out, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("got %s, want an object or a list of objects", jsonKind(v))
}

// lookupKey finds key in m, exactly or else without regard to case, the way
// Consul's decoders match field names.
func lookupKey(m map[string]any, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// defString returns the string under key in m, or "".
func defString(m map[string]any, key string) string {
	v, _ := lookupKey(m, key)
	s, _ := v.(string)
	return s
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "a number"
}

// decodeError wraps an error from decode.Generic, naming the file unless
// the error's position already does.
func decodeError(what, filename string, err error) error {
	if strings.Contains(err.Error(), filename) {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return fmt.Errorf("decode %s %s: %w", what, filename, err)
}
