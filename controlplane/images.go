package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/audit"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store"
)

// spoolRetryAfter is the Retry-After, in seconds, of an upload refused
// because the spool is full: about what a large upload takes to finish.
const spoolRetryAfter = "10"

// imageContentTypes are the media types an image upload may declare.
var imageContentTypes = []string{"", "application/x-tar", "application/octet-stream", "application/gzip", "application/x-gzip", "application/vnd.oci.image.layout.v1+tar"}

func (s *Server) pushImage(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !contains(imageContentTypes, strings.TrimSpace(ct)) {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type %q is not an image archive; send application/x-tar", ct)
	}
	if r.ContentLength > s.cfg.MaxImageBytes {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "image archive of %d bytes exceeds the %d-byte limit", r.ContentLength, s.cfg.MaxImageBytes)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxImageBytes)
	// The ratio limits take ociimage's defaults: a gzip bomb is refused
	// after DefaultRatioMinSize bytes, and the spool bounds all uploads.
	archive, err := s.spool.Spool(body, ociimage.Limits{
		MaxCompressedSize: s.cfg.MaxImageBytes,
		MaxSize:           2 * s.cfg.MaxImageBytes,
		MaxEntrySize:      s.cfg.MaxImageBytes,
	})
	if errors.Is(err, ociimage.ErrSpoolFull) {
		w.Header().Set("Retry-After", spoolRetryAfter)
		return errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "%v", err)
	}
	if err != nil {
		return archiveError(err)
	}
	defer archive.Remove()

	img, err := s.deps.Images.Import(r.Context(), archive.Path)
	if err != nil {
		return archiveError(err)
	}
	rec := store.Image{Name: img.Name, Digest: img.Digest, Size: archive.Size, CreatedAt: s.deps.Now().UTC(), Registry: s.cfg.RegistryAddr}
	if _, err := s.deps.Store.Txn(r.Context(), store.PutJSON(store.ImageKey(img.Name), rec, store.AnyVersion)); err != nil {
		// The runtime has an image the store does not know; take it back out
		// so a failed push leaves nothing half-done.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		defer cancel()
		if derr := s.deps.Images.Delete(ctx, img.Name); derr != nil {
			s.deps.Logger.Error("roll back image import", "image", img.Name, "err", derr)
		}
		return fmt.Errorf("record image %s: %w", img.Name, err)
	}
	img.Size = archive.Size
	audit.SetObject(r.Context(), "images/"+img.Name) // the path does not name it
	writeJSON(w, http.StatusCreated, img)
	return nil
}

// archiveError maps a refused archive to 400 (or 413 for a broken size
// limit): one that is malformed or unsafe, or whose image cannot run on
// this node (the importer says so with an *ociimage.ArchiveError).
func archiveError(err error) error {
	var ae *ociimage.ArchiveError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr), errors.Is(err, ociimage.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "%v", err)
	case errors.As(err, &ae):
		return errorf(http.StatusBadRequest, api.CodeInvalidArchive, "%v", err)
	}
	return err
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	recs, _, err := store.ListJSON[store.Image](r.Context(), s.deps.Store, store.PrefixImages)
	if err != nil {
		return err
	}
	out := api.ImageList{Images: make([]api.Image, 0, len(recs))}
	for _, rec := range recs {
		out.Images = append(out.Images, api.Image{Name: rec.Value.Name, Digest: rec.Value.Digest, Size: rec.Value.Size})
	}
	slices.SortFunc(out.Images, func(a, b api.Image) int { return strings.Compare(a.Name, b.Name) })
	out.Images, out.Continue = paginate(out.Images, pg, func(i api.Image) string { return i.Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
