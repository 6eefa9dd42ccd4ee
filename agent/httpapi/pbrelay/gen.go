// Package pbrelay holds the generated protobuf and gRPC code of the HTTP
// read relay between nodes. Never edit the *.pb.go files by hand: run
// `make generate`.
package pbrelay

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative relay.proto
