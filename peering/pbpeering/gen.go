// Package pbpeering holds the generated protobuf and gRPC code of the
// peering management API (PeeringService): generating and redeeming peering
// tokens, reading, listing and deleting peerings, and reading peers' trust
// bundles. Never edit the *.pb.go files by hand: run `make generate`.
package pbpeering

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative peering.proto
