package autoscaler

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
)

func TestRevisionLabelsCarryTheNamespace(t *testing.T) {
	assert.Equal(t, prometheus.Labels{"namespace": "team-a", "function": "hello.team-a", "revision": "hello.team-a-00001"},
		revisionLabels("hello.team-a", "hello.team-a-00001"), "function stays the qualified name, as dashboards group by it")
	assert.Equal(t, prometheus.Labels{"namespace": "default", "function": "hello", "revision": "hello-00001"},
		revisionLabels("hello", "hello-00001"))
}
