// Command grpcecho is ebb's gRPC example function: a gRPC server speaking
// h2c (HTTP/2 without TLS) on $PORT, deployed with protocol: h2c. It
// serves echopb.Echo (echopb/echo.proto), with a method of each kind:
//
//	Unary         answers the request's message
//	ServerStream  answers count responses
//	ClientStream  answers once, the client's messages joined by commas
//	Bidi          answers each request as it comes
//
// delay_ms makes it wait before each answer, for deadline tests; every
// answer names the revision and replica ($EBB_REVISION, $EBB_REPLICA),
// for traffic split tests. It also serves the standard gRPC health
// service. The e2e tests and the gRPC benchmark build it into an image
// the way they build examples/hello.
package main
