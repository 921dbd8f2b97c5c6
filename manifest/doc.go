// Package manifest is a PLACEHOLDER for the real package of helper
// MANIFEST (see DECLARATIVE.md), with just enough of its API for the CLI
// and the apply handler to build and be tested. The lead drops this commit
// at merge.
package manifest
