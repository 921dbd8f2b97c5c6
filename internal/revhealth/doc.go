// Package revhealth is the one rule that says whether a revision has
// failed, from what the node agents report of it (one
// store.RevisionNodeStatus per node). The control plane's status API names
// a revision's state with it and the activator fails buffered requests fast
// with it, so the two cannot disagree.
//
// It is pure: no I/O, no clock, no logging. What a node reports, and so
// when one crash becomes a crash loop, is the node agent's to say
// (nodeagent's status); this package only adds the nodes up.
package revhealth
