package revhealth

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func node(name, state, msg string, ready int) store.RevisionNodeStatus {
	return store.RevisionNodeStatus{Revision: "fn-00001", Node: name, State: state, Message: msg, Ready: ready}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name  string
		nodes []store.RevisionNodeStatus
		want  Verdict
	}{
		{name: "no reports", want: Verdict{}},
		{name: "ready", nodes: []store.RevisionNodeStatus{node("a", api.RevisionReady, "", 2)}, want: Verdict{}},
		{name: "idle", nodes: []store.RevisionNodeStatus{node("a", api.RevisionIdle, "", 0)}, want: Verdict{}},
		{
			// Issue 13, bug 1: a node restarting its only replica after one
			// crash reports Scaling, and requests wait for the restart.
			name:  "restarting after one crash",
			nodes: []store.RevisionNodeStatus{node("a", api.RevisionScaling, "replica r1 exited with code 1; restarting in 100ms", 0)},
			want:  Verdict{},
		},
		{
			name:  "cannot start",
			nodes: []store.RevisionNodeStatus{node("a", api.RevisionFailed, `pull image "nope": not found`, 0)},
			want:  Verdict{Failed: true, Reason: api.RevisionFailed, Message: `pull image "nope": not found`},
		},
		{
			name:  "crash loop",
			nodes: []store.RevisionNodeStatus{node("a", api.RevisionCrashLoop, "replica r1 exited with code 3; restarting in 400ms", 0)},
			want:  Verdict{Failed: true, Reason: api.RevisionCrashLoop, Message: "replica r1 exited with code 3; restarting in 400ms"},
		},
		{
			name:  "no message",
			nodes: []store.RevisionNodeStatus{node("a", api.RevisionCrashLoop, "", 0)},
			want:  Verdict{Failed: true, Reason: api.RevisionCrashLoop, Message: "replicas keep crashing"},
		},
		{
			// The activator used to say failed only when no node was
			// ready, the status API even while replicas served: now
			// neither calls a revision that serves failed, and both say
			// what the troubled node reports.
			name: "a crash loop on one node while another serves",
			nodes: []store.RevisionNodeStatus{
				node("a", api.RevisionCrashLoop, "exit 1", 0),
				node("b", api.RevisionReady, "", 1),
			},
			want: Verdict{Reason: api.RevisionCrashLoop, Message: "exit 1"},
		},
		{
			name: "failed outranks crash loop",
			nodes: []store.RevisionNodeStatus{
				node("a", api.RevisionCrashLoop, "exit 1", 0),
				node("b", api.RevisionFailed, "bad entrypoint", 0),
			},
			want: Verdict{Failed: true, Reason: api.RevisionFailed, Message: "bad entrypoint"},
		},
		{
			// Both callers used to differ here too: the activator took the
			// first message, the status API joined them all.
			name: "every node's message, in node order, each once",
			nodes: []store.RevisionNodeStatus{
				node("c", api.RevisionFailed, "disk full", 0),
				node("a", api.RevisionFailed, "bad entrypoint", 0),
				node("b", api.RevisionFailed, "bad entrypoint", 0),
				node("d", api.RevisionScaling, "1 of 2 replicas ready", 0),
			},
			want: Verdict{Failed: true, Reason: api.RevisionFailed, Message: "bad entrypoint; disk full"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Judge(tt.nodes))
		})
	}
}
