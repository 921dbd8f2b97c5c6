// Package nodecred is how ebbd processes on different machines
// authenticate to each other: routers and node agents to the control
// plane's /internal/ endpoints (load reports, activations), and the
// control plane to each node agent's logs API.
//
// Each process has its own credential, ebbn_{node}_{role}_{secret},
// created on its first start in <data-dir>/node-credentials/{role} (mode
// 0600) and registered as a SHA-256 at nodecreds/{node}/{role} in the
// store, which every process already shares; so no secret is copied
// between machines, and the admin token need not leave the control plane.
// A Verifier accepts a credential only from the roles it names, and the
// public API never looks at nodecreds/: a captured node credential opens
// the few endpoints that node's role calls, never the public API.
package nodecred
