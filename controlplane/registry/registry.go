package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Limits of what a request may name.
const (
	// maxPathBytes bounds the whole path: a name of at most 255 bytes
	// after its domain, a domain, and a digest.
	maxPathBytes = 1024
	// maxDepth bounds how deep an index of indexes is searched for a
	// digest.
	maxDepth = 4
	// DefaultNamespace is the containerd namespace the images live in.
	DefaultNamespace = "ebb"
)

// Images reads the image records: containerd's images.Store, read only.
type Images interface {
	Get(ctx context.Context, name string) (images.Image, error)
	List(ctx context.Context, filters ...string) ([]images.Image, error)
}

// Content reads blobs: containerd's content store, read only.
type Content interface {
	content.Provider
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
}

// Config says where the images live.
type Config struct {
	// Namespace is the containerd namespace. Default "ebb".
	Namespace string
}

// Deps are the server's collaborators.
type Deps struct {
	Images  Images
	Content Content
	// Logger may be nil: nothing is logged.
	Logger *slog.Logger
}

// Server is the read-only distribution API over containerd's stores.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
}

// New returns a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if deps.Images == nil || deps.Content == nil {
		return nil, errors.New("registry needs an image store and a content store")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, deps: deps, log: log}, nil
}

// OCI distribution error codes.
const (
	codeNameInvalid      = "NAME_INVALID"
	codeNameUnknown      = "NAME_UNKNOWN"
	codeManifestUnknown  = "MANIFEST_UNKNOWN"
	codeManifestInvalid  = "MANIFEST_INVALID"
	codeBlobUnknown      = "BLOB_UNKNOWN"
	codeDigestInvalid    = "DIGEST_INVALID"
	codeUnsupported      = "UNSUPPORTED"
	codeInternal         = "UNKNOWN"
	contentTypeBlob      = "application/octet-stream"
	headerContentDigest  = "Docker-Content-Digest"
	headerAPIVersion     = "Docker-Distribution-API-Version"
	distributionAPIValue = "registry/2.0"
)

// request is what a path asks for.
type request struct {
	kind string // "base", "manifests" or "blobs"
	name string
	// tag or dgst is set for manifests, dgst for blobs.
	tag  string
	dgst digest.Digest
}

// httpError is a refusal with its OCI code.
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return e.message }

func refuse(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// parse reads a /v2/ path. It decides everything from the path alone, so
// that a hostile one is refused before the stores are asked anything.
func parse(path string) (request, error) {
	if len(path) > maxPathBytes {
		return request{}, refuse(http.StatusBadRequest, codeNameInvalid, "path of %d bytes is longer than %d", len(path), maxPathBytes)
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return request{}, refuse(http.StatusNotFound, codeNameUnknown, "not a /v2/ path")
	}
	if rest == "" {
		return request{kind: "base"}, nil
	}
	for _, kind := range []string{"manifests", "blobs"} {
		i := strings.LastIndex(rest, "/"+kind+"/")
		if i < 0 {
			continue
		}
		name, ref := rest[:i], rest[i+len(kind)+2:]
		if err := validName(name); err != nil {
			return request{}, err
		}
		req := request{kind: kind, name: name}
		if kind == "manifests" && !strings.Contains(ref, ":") {
			if !reference.TagRegexp.MatchString(ref) || reference.TagRegexp.FindString(ref) != ref {
				return request{}, refuse(http.StatusBadRequest, codeManifestInvalid, "%q is not a tag", truncate(ref))
			}
			req.tag = ref
			return req, nil
		}
		d, err := digest.Parse(ref)
		if err != nil {
			return request{}, refuse(http.StatusBadRequest, codeDigestInvalid, "%q is not a digest: %v", truncate(ref), err)
		}
		req.dgst = d
		return req, nil
	}
	return request{}, refuse(http.StatusNotFound, codeNameUnknown, "no such route (this registry serves manifests and blobs, read only)")
}

// validName accepts a repository name in its canonical form, domain
// first, without tag or digest: docker.io/library/hello.
func validName(name string) error {
	named, err := reference.ParseNamed(name)
	if err != nil {
		return refuse(http.StatusBadRequest, codeNameInvalid, "%q is not a repository name: %v", truncate(name), err)
	}
	if !reference.IsNameOnly(named) || named.Name() != name {
		return refuse(http.StatusBadRequest, codeNameInvalid, "%q is not a repository name", truncate(name))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerAPIVersion, distributionAPIValue)
	if err := s.serve(w, r); err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			s.log.Error("registry", "path", r.URL.Path, "err", err)
			he = refuse(http.StatusInternalServerError, codeInternal, "%v", err)
		}
		writeError(w, he)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return refuse(http.StatusMethodNotAllowed, codeUnsupported, "this registry is read only: %s is not served", r.Method)
	}
	req, err := parse(r.URL.Path)
	if err != nil {
		return err
	}
	ctx := namespaces.WithNamespace(r.Context(), s.cfg.Namespace)
	switch req.kind {
	case "base":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return nil
	case "manifests":
		desc, err := s.manifest(ctx, req)
		if err != nil {
			return err
		}
		return s.send(ctx, w, r, desc, desc.MediaType)
	default:
		desc, err := s.find(ctx, req.name, req.dgst)
		if err != nil {
			return err
		}
		if desc == nil {
			return refuse(http.StatusNotFound, codeBlobUnknown, "blob %s is not in repository %s", req.dgst, req.name)
		}
		return s.send(ctx, w, r, *desc, contentTypeBlob)
	}
}

// manifest finds the manifest (or index) a tag names, or one with that
// digest that an image of the repository references.
func (s *Server) manifest(ctx context.Context, req request) (ocispec.Descriptor, error) {
	if req.tag != "" {
		img, err := s.deps.Images.Get(ctx, req.name+":"+req.tag)
		if errdefs.IsNotFound(err) {
			return ocispec.Descriptor{}, refuse(http.StatusNotFound, codeManifestUnknown, "manifest unknown: %s:%s", req.name, req.tag)
		}
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("image %s:%s: %w", req.name, req.tag, err)
		}
		return img.Target, nil
	}
	desc, err := s.find(ctx, req.name, req.dgst)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if desc == nil || !(images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType)) {
		return ocispec.Descriptor{}, refuse(http.StatusNotFound, codeManifestUnknown, "manifest unknown: %s@%s", req.name, req.dgst)
	}
	return *desc, nil
}

// find returns the descriptor of dgst where an image of repository name
// references it, or nil if none does.
func (s *Server) find(ctx context.Context, name string, dgst digest.Digest) (*ocispec.Descriptor, error) {
	imgs, err := s.deps.Images.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		if !inRepository(img.Name, name) {
			continue
		}
		desc, err := s.walk(ctx, img.Target, dgst, 0)
		if err != nil || desc != nil {
			return desc, err
		}
	}
	return nil, nil
}

// inRepository reports whether an image name (name:tag or name@digest)
// is in repository repo.
func inRepository(image, repo string) bool {
	rest, ok := strings.CutPrefix(image, repo)
	return ok && (strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, "@"))
}

// walk looks for dgst at or under desc. Children that are not in the
// content store (the other platforms of an index) are skipped.
func (s *Server) walk(ctx context.Context, desc ocispec.Descriptor, dgst digest.Digest, depth int) (*ocispec.Descriptor, error) {
	if desc.Digest == dgst {
		return &desc, nil
	}
	if depth >= maxDepth || !(images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType)) {
		return nil, nil
	}
	children, err := images.Children(ctx, s.deps.Content, desc)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	for _, c := range children {
		found, err := s.walk(ctx, c, dgst, depth+1)
		if err != nil || found != nil {
			return found, err
		}
	}
	return nil, nil
}

// send serves desc's content, with ranges and HEAD as http.ServeContent
// does them.
func (s *Server) send(ctx context.Context, w http.ResponseWriter, r *http.Request, desc ocispec.Descriptor, contentType string) error {
	ra, err := s.deps.Content.ReaderAt(ctx, desc)
	if errdefs.IsNotFound(err) {
		return refuse(http.StatusNotFound, codeBlobUnknown, "blob %s is not held", desc.Digest)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	w.Header().Set("Content-Type", contentType)
	w.Header().Set(headerContentDigest, desc.Digest.String())
	w.Header().Set("ETag", `"`+desc.Digest.String()+`"`)
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(ra, 0, ra.Size()))
	return nil
}

// errorBody is the OCI distribution error body.
type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, e *httpError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(errorBody{Errors: []errorEntry{{Code: e.code, Message: e.message}}})
}
