// Package h2listen splits one listener between HTTP/1.x and HTTP/2 with
// prior knowledge (h2c), by the first bytes each connection sends.
//
// Accept returns every connection at once, wrapped. The wrapper's first
// Read, which the HTTP/1.1 server makes when it starts reading the first
// request, looks at what arrived: a connection that opens with the HTTP/2
// client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", RFC 9113 §3.4) is
// handed, preface and all, to an HTTP/2 server function in a goroutine of
// its own, and the HTTP/1.1 server reads EOF and lets go of it (its Close
// of the wrapper is then a no-op). Every other connection carries on
// unchanged: the bytes read are the HTTP/1.1 server's own buffer, so
// nothing is copied, and an HTTP/1.1 request differs from the preface in
// its first or second byte, so the sniff costs a comparison per connection
// and nothing per request.
//
// Sniffing in the HTTP/1.1 server's own read, rather than in Accept or a
// goroutine of the listener's, keeps that server's accounting whole: a
// connection that sends nothing counts against its connection cap and its
// read timeouts exactly as before, and no accept waits on a slow client.
package h2listen
