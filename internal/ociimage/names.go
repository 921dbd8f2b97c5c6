package ociimage

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is containerd's annotation for an image's full name on
// an index.json entry (containerd's images.AnnotationImageName).
const AnnotationImageName = "io.containerd.image.name"

// NormalizeName turns a user's image reference into the full form
// containerd stores and ebb compares: "hello" and "hello:latest" both become
// "docker.io/library/hello:latest". Every place that names an image
// (uploads, function specs, lookups) goes through it so they agree.
func NormalizeName(name string) (string, error) {
	if strings.TrimSpace(name) != name || name == "" {
		return "", fmt.Errorf("invalid image name %q", name)
	}
	n, err := reference.ParseDockerRef(name)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", name, err)
	}
	return n.String(), nil
}

// ImageName returns the normalized name an index.json entry gives its image,
// or "" if it names none. The containerd annotation wins. The OCI ref.name
// annotation counts only when it is a full reference: by the OCI spec it is
// often just a tag ("latest"), which names nothing on its own.
func ImageName(annotations map[string]string) (string, error) {
	name := annotations[AnnotationImageName]
	if name == "" {
		ref := annotations[ocispec.AnnotationRefName]
		if !strings.ContainsAny(ref, "/:@") {
			return "", nil
		}
		name = ref
	}
	return NormalizeName(name)
}

// refNameTag is what Build writes as the OCI ref.name: the tag (or digest)
// part of a full name, as containerd's exporter does.
func refNameTag(named reference.Named) string {
	if t, ok := named.(reference.Tagged); ok {
		return t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		return d.Digest().String()
	}
	return "latest"
}

// NamesRegistry reports whether a reference, as a user wrote it, names the
// registry it lives in ("registry.example.com:5000/team/hello:v1",
// "localhost:5000/hello", "docker.io/library/nginx"), rather than leaving
// it to the docker.io default ("hello", "team/hello"). ebb pulls only the
// former; the latter name images uploaded to the control plane.
func NamesRegistry(ref string) bool {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false
	}
	return strings.HasPrefix(ref, reference.Domain(named)+"/")
}

// Registry is the registry host a reference names, docker.io for one that
// names none.
func Registry(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	return reference.Domain(named), nil
}
