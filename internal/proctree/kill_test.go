package proctree

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKillMentioning(t *testing.T) {
	marker := fmt.Sprintf("proctree-test-%d", os.Getpid())
	// sh, named marker through $0, with a child that does not mention it.
	// The child is killed first; sh then execs another sleep in its own
	// pid rather than exit 0 before its own SIGKILL lands, so "sh was
	// killed" holds whichever comes first.
	cmd := exec.Command("sh", "-c", "sleep 600 & echo started; wait; exec sleep 600", marker)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\n", line) // the child exists now

	killed := KillMentioning(marker)

	// The child may not have exec'd sleep yet, so it is known by its pid,
	// not its command line.
	require.Len(t, killed, 2)
	assert.NotEqual(t, cmd.Process.Pid, killed[0].Pid, "the descendant first")
	assert.Equal(t, cmd.Process.Pid, killed[1].Pid)
	assert.Contains(t, killed[1].Cmdline, marker)
	assert.Error(t, cmd.Wait(), "sh was killed")
	assert.Empty(t, KillMentioning(marker), "nothing is left")
}
