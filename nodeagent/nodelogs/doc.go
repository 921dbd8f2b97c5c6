// Package nodelogs reads replica logs from node agents on other machines:
// it asks every node agent that advertises an address for a function's
// lines and merges what they send into one stream. The control plane uses
// it when it does not run a node agent itself.
//
// It reads node records from the store and speaks the node agent's
// GET /v1/logs; it never writes anything.
package nodelogs
