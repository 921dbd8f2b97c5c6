// Command crasher is a function that cannot start: it says why on standard
// error and exits with status 3, as a function whose database is down
// would. The end-to-end tests deploy it to see ebb fail its requests fast.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "crasher: cannot reach the database")
	os.Exit(3)
}
