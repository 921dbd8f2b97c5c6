// Package proctree kills what a test or benchmark run left running: every
// process whose command line mentions a path the run owns (a private
// containerd and its shims carry their state directory in their
// arguments), with all its descendants (the containers' processes under
// those shims). It reads /proc and needs the privilege to signal them.
package proctree
