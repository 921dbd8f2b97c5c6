// Package deploy holds what an operator needs to run ebb, none of it Go:
// systemd units (systemd/), ebbd configuration files (config/), a
// multi-node walk-through with its Redis configuration (multinode/),
// Prometheus scrape configuration, alert rules and their unit tests
// (prometheus/), and a Grafana dashboard (grafana/). README.md indexes it.
//
// The package's Go code is only its tests, and they exist so that these
// files cannot drift from the code silently: every YAML and JSON file must
// parse; every ebb_* metric and label the alerts, the alert tests and the
// dashboard use must be defined in the repository's Go sources; every key
// of the config files and every flag the units pass must be one ebbd
// knows; the addresses in the config files, the units and the Prometheus
// targets must agree; every deploy/ path the files mention must exist; and
// the limitations the docs state must still be true of cmd/ebbd. With
// promtool on PATH, the tests also check the Prometheus files with it and
// run the alert unit tests.
//
// It must not be imported, and it must not hold anything a running ebbd
// reads: ebbd takes its configuration from flags and --config only.
package deploy
