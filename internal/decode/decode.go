package decode

import "fmt"

// JSON decodes the JSON document data into the value v points to. Keys match
// fields as the package documentation describes; unknown keys, keys set
// twice, values of the wrong type and trailing data are errors.
func JSON(data []byte, v any) error {
	return decodeJSON(data, "", v)
}

func decodeJSON(data []byte, filename string, v any) error {
	g, err := parseJSON(data, filename)
	if err != nil {
		return err
	}
	return decodeValue(g, v)
}

// HCL decodes the HCL native-syntax document data into the value v points to.
// filename is used in error positions.
func HCL(data []byte, filename string, v any) error {
	g, err := parseHCL(data, filename)
	if err != nil {
		return err
	}
	return decodeValue(g, v)
}

// Auto decodes data as JSON if its first non-space byte is '{' or '[', and as
// HCL otherwise.
func Auto(data []byte, filename string, v any) error {
	if looksLikeJSON(data) {
		return decodeJSON(data, filename, v)
	}
	return HCL(data, filename, v)
}

// Generic reads a JSON or HCL document (chosen as Auto does) into a generic
// object. Values are map[string]any, []any, string, bool, json.Number or nil;
// numbers are always json.Number. A JSON document must be an object.
func Generic(data []byte, filename string) (map[string]any, error) {
	if !looksLikeJSON(data) {
		return parseHCL(data, filename)
	}
	g, err := parseJSON(data, filename)
	if err != nil {
		return nil, err
	}
	m, ok := g.(map[string]any)
	if !ok {
		return nil, errorf("", fmt.Sprintf("expected a JSON object at the top level, got %s", describe(g)))
	}
	return m, nil
}

// Into decodes a generic object, such as one returned by Generic, into the
// value v points to, with the same rules as JSON. raw may also hold other Go
// numbers, named string types, string-keyed maps and slices. raw is not
// modified, and v shares no memory with it.
func Into(raw map[string]any, v any) error {
	g, err := normalizeGeneric(raw, "", 0)
	if err != nil {
		return err
	}
	return decodeValue(g, v)
}
