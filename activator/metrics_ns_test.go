package activator

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNamespaceLabel(t *testing.T) {
	assert.Equal(t, "team-a", namespaceOf("hello.team-a"))
	assert.Equal(t, "default", namespaceOf("hello"))
}
