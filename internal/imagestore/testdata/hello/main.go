// Command hello is the program inside imagestore's test image: it proves the
// image runs under runc as the configured user and that /tmp is writable.
package main

import (
	"fmt"
	"os"
)

func main() {
	err := os.WriteFile("/tmp/probe", []byte("ok"), 0o600)
	fmt.Printf("hello from ebb uid=%d tmp-writable=%v args=%v\n", os.Getuid(), err == nil, os.Args[1:])
}
