// Command helloworld answers as Knative's helloworld-go sample does
// ("Hello $TARGET!", "World" without TARGET), so that Knative's documented
// Service manifests can be applied to ebb unchanged but for the image, and
// their URLs checked for the answer the samples promise. It is ebb's own
// small program, not a copy of the sample's.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	target := os.Getenv("TARGET")
	if target == "" {
		target = "World"
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	srv := &http.Server{Addr: ":" + port, ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "Hello %s!\n", target)
		})}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "helloworld:", err)
		os.Exit(1)
	}
}
