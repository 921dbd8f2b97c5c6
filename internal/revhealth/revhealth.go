package revhealth

import (
	"slices"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Verdict is what the nodes' reports of one revision add up to.
type Verdict struct {
	// Failed is true when the revision cannot serve: no node has a ready
	// replica of it, and at least one node reports that its replicas
	// cannot start (api.RevisionFailed) or keep crashing
	// (api.RevisionCrashLoop). Requests for it must fail fast rather than
	// wait out their deadline.
	//
	// A revision that some node serves has not failed, whatever other
	// nodes report: requests go to the ready replicas.
	Failed bool
	// Reason is the worst trouble any node reports, api.RevisionFailed
	// over api.RevisionCrashLoop, or "" if none does. It is set whether or
	// not the revision has Failed, so a status can say why a revision
	// that still serves is short of replicas.
	Reason string
	// Message says what the nodes in Reason report, in node order, each
	// distinct message once.
	Message string
}

// Judge returns the verdict on one revision from its nodes' statuses, in
// any order.
func Judge(nodes []store.RevisionNodeStatus) Verdict {
	var v Verdict
	ready := false
	for _, n := range nodes {
		if n.Ready > 0 {
			ready = true
		}
		if rank(n.State) > rank(v.Reason) {
			v.Reason = n.State
		}
	}
	if v.Reason == "" {
		return v
	}
	v.Failed = !ready
	in := make([]store.RevisionNodeStatus, 0, len(nodes))
	for _, n := range nodes {
		if n.State == v.Reason {
			in = append(in, n)
		}
	}
	slices.SortStableFunc(in, func(a, b store.RevisionNodeStatus) int { return strings.Compare(a.Node, b.Node) })
	var msgs []string
	for _, n := range in {
		msg := n.Message
		if msg == "" {
			msg = defaultMessage[v.Reason]
		}
		if !slices.Contains(msgs, msg) {
			msgs = append(msgs, msg)
		}
	}
	v.Message = strings.Join(msgs, "; ")
	return v
}

// rank orders the states that are trouble; every other state ranks 0.
func rank(state string) int {
	switch state {
	case api.RevisionFailed:
		return 2
	case api.RevisionCrashLoop:
		return 1
	}
	return 0
}

// defaultMessage stands in for a node that gave no message.
var defaultMessage = map[string]string{
	api.RevisionFailed:    "replicas cannot start",
	api.RevisionCrashLoop: "replicas keep crashing",
}
