// Package api holds ebb's wire types: the JSON that the control-plane API
// accepts and returns, their defaults and validation, and a typed client.
//
// It is imported by every component and by the CLI, so it must stay free of
// I/O beyond the client and must not import any other ebb package.
package api
