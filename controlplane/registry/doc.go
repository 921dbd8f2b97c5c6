// Package registry serves the images the control plane holds (those
// uploaded with POST /v1/images) through the read side of the OCI
// distribution API, so that node agents on other machines pull them as
// from any registry: GET and HEAD of /v2/, of
// /v2/<name>/manifests/<tag or digest> and of /v2/<name>/blobs/<digest>.
//
// A repository's <name> is the image's full name without its tag, the
// registry's domain first: docker.io/library/hello:v1 is
// /v2/docker.io/library/hello/manifests/v1. A blob or a manifest by digest
// is served only when an image of that repository references it.
//
// It must not write: there is no push, no delete and no catalog. It does
// not authenticate either; ebbd wraps it in nodecred.Require, so only node
// credentials reach it. Every refusal is an OCI error body
// ({"errors":[{"code","message"}]}) with a 4xx status.
package registry
