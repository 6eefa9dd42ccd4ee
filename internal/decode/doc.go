// Package decode turns JSON or HCL documents into Go structs strictly.
//
// Documents are first read into a generic value (map[string]any, []any,
// string, bool, json.Number or nil; numbers are always json.Number so that no
// precision is lost) and then walked alongside the target type by reflection:
//
//   - Object keys match struct fields case-insensitively and ignoring
//     underscores, so "peer_name", "PeerName" and "peername" all set the field
//     PeerName. A field's name is its json tag name if it has one, else its Go
//     name. An `alias:"a,b"` struct tag adds further accepted spellings.
//     Keys inside Go maps (Meta, Config, header maps) are kept as written.
//   - An unknown key, a key set twice, or a value of the wrong type is an
//     error naming the path of the offending value, for example
//     `Services[0].Consumers[1].Peer: expected a string, got number 3`.
//   - A struct type implementing RefusedFields names the keys of a wider
//     schema it refuses on purpose, and the error gives its reason instead
//     of "unknown field" (Consul's script checks, for example).
//   - Where an object is expected, a list holding exactly one object is
//     accepted too, and where a list of objects is expected, a single object
//     is accepted as a list of one. So an HCL block decodes into a struct
//     field as well as a slice field.
//   - Types implementing json.Unmarshaler (such as Duration and time.Time) or
//     encoding.TextUnmarshaler decode themselves.
//
// HCL documents use the hcl/v2 native syntax and are converted without a
// schema: attributes become values, a block type becomes a list of objects
// (one per block), and block labels nest as object keys. Expressions are
// evaluated without variables or functions, and a key set twice in an object
// literal is an error. For compatibility with HCL 1, which Consul's
// documentation uses, `key { ... }` inside an object literal is read as
// `key = { ... }`.
//
// Nesting deeper than MaxDepth is rejected, and no input makes the package
// panic.
//
// Every error the package returns for bad input is an *Error. It imports
// nothing from peerd.
package decode
