// Package pbpeerstream holds the generated protobuf and gRPC code of the
// replication protocol between peered clusters (PeerStreamService), and
// hand-written helpers in types.go: the resource type URLs and
// ReplicationMessage.Validate. Never edit the *.pb.go files by hand: run
// `make generate`.
package pbpeerstream

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative peerstream.proto
