// Package callbackurl is the policy on where an asynchronous invocation's
// callback (Ebb-Callback-Url) may go: the platform POSTs there from inside
// the cluster, so a caller must not aim it at what only the cluster can
// reach. Link-local addresses (169.254.0.0/16 with the clouds' metadata
// services, fe80::/10), unspecified and multicast addresses are refused
// always; loopback and private ranges unless an operator allows them
// (ebbd --invoker-callback-allow). The router and the API check a URL at
// submit (CheckURL: an address, or a name such as localhost that names
// one); the invoker checks every address it dials (Policy.Control on a
// net.Dialer), so a name that resolves elsewhere later, or a redirect,
// cannot get around the check. It is pure but for Control's signature.
package callbackurl
