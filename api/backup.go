package api

import "time"

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
