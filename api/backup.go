package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Backups (GET /v1/backup, POST /v1/restore; package backup has the
// format).
const (
	// BackupContentType is the media type of a backup file.
	BackupContentType = "application/vnd.ebb.backup"
	// CodeInvalidBackup: the file is not a backup, or is corrupt,
	// truncated or from a newer ebb (400). Nothing was written.
	CodeInvalidBackup = "invalid_backup"
	// CodeNotEmpty: a restore needs an empty cluster (409).
	CodeNotEmpty = "not_empty"
	// CodeKeyMissing: the backup's secrets are sealed under a key the
	// cluster does not hold (409).
	CodeKeyMissing = "key_missing"
)

// RestoreResult is the answer to a restore.
type RestoreResult struct {
	// Revision is the store revision the restore wrote.
	Revision int64 `json:"revision"`
	Records  int   `json:"records"`
	Images   int   `json:"images"`
	// BackupRevision and BackupCreatedAt describe the backup restored.
	BackupRevision  int64     `json:"backupRevision"`
	BackupCreatedAt time.Time `json:"backupCreatedAt"`
}

// Backup streams a backup of the cluster (with every image's archive when
// withImages). The caller closes it and should verify what it read (the
// stream ends short of its checksum if the server failed midway).
func (c *Client) Backup(ctx context.Context, withImages bool) (io.ReadCloser, error) {
	q := url.Values{}
	if withImages {
		q.Set("images", "true")
	}
	return c.stream(ctx, "/v1/backup", q, BackupContentType)
}

// Restore sends a backup, streamed from r, to restore into an empty
// cluster.
func (c *Client) Restore(ctx context.Context, r io.Reader) (RestoreResult, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/restore", nil, io.NopCloser(r))
	if err != nil {
		return RestoreResult{}, err
	}
	req.Header.Set("Content-Type", BackupContentType)
	if n, ok := remainingLength(r); ok {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
	}
	var res RestoreResult
	_, err = c.roundTrip(req, &res, http.StatusOK)
	return res, err
}
