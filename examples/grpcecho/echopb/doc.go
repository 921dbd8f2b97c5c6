// Package echopb is the gRPC echo example's protocol, generated from
// echo.proto by protoc-gen-go and protoc-gen-go-grpc (see go:generate);
// the generated files are checked in so that building needs no protoc.
package echopb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative echo.proto
