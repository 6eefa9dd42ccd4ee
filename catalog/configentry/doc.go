// Package configentry defines the config entry kinds peerd understands,
// decodes them from JSON or HCL, and validates them the way Consul does.
//
// There is one struct per kind. Field names and JSON shapes are identical to
// those of Consul's API package (github.com/hashicorp/consul/api), so the
// official client's ConfigEntries().Set/Get/List/CAS/Delete round-trip through
// these types. Decoding is strict (see internal/decode): keys match fields
// case-insensitively and ignoring underscores, so the snake_case spellings
// Consul accepts work too, and unknown fields are errors naming their path.
//
// The life of an entry:
//
//   - Decode (JSON or HCL, as written by users or sent by clients) reads the
//     Kind, decodes strictly into that kind's struct and calls Normalize,
//     which fills the defaults Consul fills. It does not validate.
//   - Validate applies Consul's rules. Its errors are *decode.Error values
//     whose Path locates the offending field, for example
//     `Services[0].Consumers[0]`, and whose message says how to fix it.
//   - DecodeKind reads back JSON produced by json.Marshal of an entry, such as
//     an entry stored in the raft log. It neither normalizes nor validates,
//     so replaying the log reproduces exactly what was stored.
//
// This package must not import github.com/peerd/peerd/catalog/state (or
// catalog), which imports it. It is pure data: no I/O, no clock, no randomness, and every function is
// deterministic (map iteration is always sorted).
package configentry
