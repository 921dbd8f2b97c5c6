// Package nodelogs reads replica logs from node agents on other machines:
// it asks every node agent that advertises an address for a function's
// lines and merges what they send into one stream, by the time each line
// was written, so a tail of N is the newest N lines of all nodes together.
// The control plane uses it when it does not run a node agent itself.
//
// It is the client of the node agent's log rings (nodeagent/logring): it
// reads node records from the store and speaks their GET /v1/logs, with
// timestamps for the merge. It never writes anything.
package nodelogs
