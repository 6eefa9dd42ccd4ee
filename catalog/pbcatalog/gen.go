// Package pbcatalog holds the generated protobuf and gRPC code of the
// cluster-internal catalog API. Never edit the *.pb.go files by hand: run
// `make generate`.
package pbcatalog

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative catalog.proto
