// Command sleeper is a container process that never exits by itself, used
// to check that testenv kills what a test leaves running.
package main

import "time"

func main() { time.Sleep(24 * time.Hour) }
