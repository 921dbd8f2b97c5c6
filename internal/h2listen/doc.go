// Package h2listen splits one listener between HTTP/1.x and HTTP/2 with
// prior knowledge (h2c), by the first bytes each connection sends.
//
// A connection that opens with the HTTP/2 client preface ("PRI *
// HTTP/2.0\r\n\r\nSM\r\n\r\n", RFC 9113 §3.4) is handed, preface and
// all, to an HTTP/2 server function; every other connection is returned
// by Accept to the HTTP/1.1 server with the bytes read so far put back in
// front of its stream. An HTTP/1.1 request differs from the preface in
// its first or second byte, so sniffing costs one short read per
// connection and nothing per request: the HTTP/1.1 server is not touched.
//
// Sniffing runs in a goroutine per connection, never in Accept, so that a
// client that connects and sends nothing holds up only itself (until the
// sniff timeout), never the accept loop.
package h2listen
