// Package linestream serves a stream of lines over HTTP GET to another ebb
// process: the node agent's replica logs and the router's access logs,
// which a control plane on another machine reads and follows. It checks
// the method and the bearer token, parses the query with the caller's
// function, and flushes every write so that followed lines arrive at once.
//
// It must not know what the lines are or where they come from.
package linestream
