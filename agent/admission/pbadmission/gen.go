// Package pbadmission holds the generated protobuf and gRPC code of node
// admission. Never edit the *.pb.go files by hand: run `make generate`.
package pbadmission

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative admission.proto
