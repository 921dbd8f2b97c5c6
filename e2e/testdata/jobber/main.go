// Command jobber is a job's program: it says which attempt it is, sleeps
// for $SLEEP (a Go duration; none by default) and exits with $EXIT_CODE
// (0 by default). The end-to-end tests run it as a job's image.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	fmt.Printf("jobber: job %s attempt %s\n", os.Getenv("EBB_JOB"), os.Getenv("EBB_JOB_INDEX"))
	if s := os.Getenv("SLEEP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "jobber: SLEEP: %v\n", err)
			os.Exit(2)
		}
		time.Sleep(d)
	}
	code := 0
	if s := os.Getenv("EXIT_CODE"); s != "" {
		var err error
		if code, err = strconv.Atoi(s); err != nil {
			fmt.Fprintf(os.Stderr, "jobber: EXIT_CODE: %v\n", err)
			os.Exit(2)
		}
	}
	fmt.Fprintf(os.Stderr, "jobber: exiting with %d\n", code)
	os.Exit(code)
}
