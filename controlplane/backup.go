package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/backup"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// Backup and restore (package backup has the format and the steps; this
// is their HTTP shell).
//
// GET /v1/backup streams a backup of the store at one revision;
// ?images=true adds every image's archive. An error after the first byte
// cuts the stream short of its checksum, so what the client saved is
// refused by any reader, never mistaken for a backup.
//
// POST /v1/restore reads a whole backup (spooling its images to disk) and
// verifies it before touching the cluster, then restores it into an empty
// cluster: images first, then every record in one store transaction.

// KeyIDs lists the ids of the key-encryption keys the control plane holds,
// current first: the keys whose secrets it can open.
func (s *Secrets) KeyIDs() []string {
	if k, ok := s.keys.(interface{ KeyIDs() []string }); ok {
		return k.KeyIDs()
	}
	return []string{s.keys.KeyID()}
}

func (s *Server) getBackup(w http.ResponseWriter, r *http.Request) error {
	withImages := false
	if v := r.URL.Query().Get("images"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusBadRequest, api.CodeInvalid, "images=%q is not a boolean", v)
		}
		withImages = b
	}
	cfg := backup.DumpConfig{Store: s.deps.Store, Now: s.deps.Now()}
	if s.deps.Secrets != nil {
		cfg.KeyID = s.deps.Secrets.keys.KeyID()
	}
	if withImages {
		ex, ok := s.deps.Images.(backup.ImageExporter)
		if !ok {
			return errorf(http.StatusNotImplemented, api.CodeInvalid, "this control plane cannot export images; back up without images=true")
		}
		cfg.Images = ex
	}
	w.Header().Set("Content-Type", api.BackupContentType)
	cw := &countingWriter{w: w}
	h, err := backup.Dump(r.Context(), cw, cfg)
	if err != nil {
		if cw.n == 0 {
			return fmt.Errorf("backup: %w", err)
		}
		s.deps.Logger.Error("backup cut short; the client's copy has no checksum and will be refused", "bytes", cw.n, "err", err)
		return nil
	}
	s.deps.Logger.Info("backup taken", "revision", h.Revision, "records", h.Records, "images", h.Images, "bytes", cw.n)
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) error {
	// A second restore would fail on the first's records and then delete
	// the images, by name, that the first one imported.
	if !s.restoring.TryLock() {
		return errorf(http.StatusConflict, api.CodeConflict, "a restore is already running on this control plane")
	}
	defer s.restoring.Unlock()
	// Image archives go next to the upload spool, on the data disk.
	dir, err := os.MkdirTemp(filepath.Dir(s.cfg.SpoolDir), "restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(dir)
	b, err := backup.Read(r.Body, backup.Options{ImageDir: dir, MaxImageBytes: s.cfg.MaxImageBytes})
	if err != nil {
		return restoreError(err)
	}
	cfg := backup.RestoreConfig{Store: s.deps.Store, Images: restoreImages{s}}
	if s.deps.Secrets != nil {
		cfg.KeyIDs = s.deps.Secrets.KeyIDs()
	}
	res, err := backup.Restore(r.Context(), b, cfg)
	if err != nil {
		return restoreError(err)
	}
	s.deps.Logger.Info("backup restored", "backupRevision", b.Header.Revision, "backupCreatedAt", b.Header.CreatedAt,
		"revision", res.Revision, "records", res.Records, "images", res.Images)
	writeJSON(w, http.StatusOK, api.RestoreResult{
		Revision: res.Revision, Records: res.Records, Images: res.Images,
		BackupRevision: b.Header.Revision, BackupCreatedAt: b.Header.CreatedAt,
	})
	return nil
}

func restoreError(err error) error {
	switch {
	case errors.Is(err, backup.ErrNotBackup), errors.Is(err, backup.ErrTruncated),
		errors.Is(err, backup.ErrCorrupt), errors.Is(err, backup.ErrVersion):
		return errorf(http.StatusBadRequest, api.CodeInvalidBackup, "%v; nothing was restored", err)
	case errors.Is(err, backup.ErrNotEmpty):
		return errorf(http.StatusConflict, api.CodeNotEmpty, "%v", err)
	case errors.Is(err, backup.ErrKeyMissing):
		return errorf(http.StatusConflict, api.CodeKeyMissing, "%v; nothing was restored", err)
	}
	var ae *ociimage.ArchiveError
	if errors.As(err, &ae) {
		return errorf(http.StatusBadRequest, api.CodeInvalidArchive, "%v; nothing was restored", err)
	}
	return fmt.Errorf("restore: %w", err)
}

// restoreImages imports a backup's archives as an upload would be: through
// the spool's validation first.
type restoreImages struct{ s *Server }

func (ri restoreImages) Import(ctx context.Context, path string) (api.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.Image{}, err
	}
	defer f.Close()
	max := ri.s.cfg.MaxImageBytes
	archive, err := ri.s.spool.Spool(f, ociimage.Limits{MaxCompressedSize: max, MaxSize: 2 * max, MaxEntrySize: max})
	if err != nil {
		return api.Image{}, err
	}
	defer archive.Remove()
	return ri.s.deps.Images.Import(ctx, archive.Path)
}

func (ri restoreImages) Delete(ctx context.Context, name string) error {
	return ri.s.deps.Images.Delete(ctx, name)
}
