package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// ImageExporter writes an image held by the cluster as an OCI archive.
type ImageExporter interface {
	Export(ctx context.Context, name string, w io.Writer) error
}

// DumpConfig is what Dump reads.
type DumpConfig struct {
	Store store.Store
	// KeyID is the cluster's current secrets key id, for the header.
	KeyID string
	// Images, when set, adds every referenced image's archive.
	Images     ImageExporter
	Now        time.Time
	EbbVersion string
}

// Snapshot is the kept records of one store listing.
type Snapshot struct {
	Revision int64
	Records  []Record
	Skipped  map[string]int
	// SecretKeyIDs are the key ids the sealed secrets are wrapped under.
	SecretKeyIDs []string
	// Images are the image references.
	Images []Image
}

// Take lists the whole store once, at one revision, and keeps what
// Prefixes says to keep.
func Take(ctx context.Context, s store.Store) (Snapshot, error) {
	kvs, rev, err := s.List(ctx, "")
	if err != nil {
		return Snapshot{}, fmt.Errorf("list the store: %w", err)
	}
	snap := Snapshot{Revision: rev, Skipped: map[string]int{}}
	keyIDs := map[string]bool{}
	for _, kv := range kvs {
		class, prefix := Classify(kv.Key)
		switch class {
		case Kept:
		case Runtime:
			snap.Skipped[prefix]++
			continue
		default:
			snap.Skipped["other"]++
			continue
		}
		snap.Records = append(snap.Records, Record{Key: kv.Key, Value: kv.Value})
		switch prefix {
		case store.PrefixSecrets:
			var sec store.Secret
			if err := json.Unmarshal(kv.Value, &sec); err != nil {
				return Snapshot{}, fmt.Errorf("secret %s: %w", kv.Key, err)
			}
			keyIDs[sec.KeyID] = true
		case store.PrefixImages:
			var img store.Image
			if err := json.Unmarshal(kv.Value, &img); err != nil {
				return Snapshot{}, fmt.Errorf("image %s: %w", kv.Key, err)
			}
			snap.Images = append(snap.Images, Image{Name: img.Name, Digest: img.Digest})
		}
	}
	for id := range keyIDs {
		snap.SecretKeyIDs = append(snap.SecretKeyIDs, id)
	}
	sort.Strings(snap.SecretKeyIDs)
	return snap, nil
}

// Dump writes a backup of cfg.Store to w and returns its header.
func Dump(ctx context.Context, w io.Writer, cfg DumpConfig) (Header, error) {
	snap, err := Take(ctx, cfg.Store)
	if err != nil {
		return Header{}, err
	}
	h := Header{
		Revision: snap.Revision, CreatedAt: cfg.Now.UTC(), KeyID: cfg.KeyID, SecretKeyIDs: snap.SecretKeyIDs,
		Records: len(snap.Records), Skipped: snap.Skipped, EbbVersion: cfg.EbbVersion,
	}
	if cfg.Images != nil {
		h.Images = len(snap.Images)
	}
	bw, err := NewWriter(w, h)
	if err != nil {
		return Header{}, err
	}
	for _, r := range snap.Records {
		if err := bw.Record(r.Key, r.Value); err != nil {
			return Header{}, fmt.Errorf("write backup: %w", err)
		}
	}
	if cfg.Images != nil {
		for _, img := range snap.Images {
			if err := writeImage(ctx, bw, cfg.Images, img); err != nil {
				return Header{}, err
			}
		}
	}
	if err := bw.Close(); err != nil {
		return Header{}, fmt.Errorf("write backup: %w", err)
	}
	return h, nil
}

func writeImage(ctx context.Context, bw *Writer, ex ImageExporter, img Image) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ex.Export(ctx, img.Name, pw)) }()
	err := bw.Image(img, pr)
	pr.CloseWithError(errors.New("backup writer stopped"))
	if err != nil {
		return fmt.Errorf("back up image %s: %w", img.Name, err)
	}
	return nil
}

// ImageImporter loads an image archive into the cluster, and removes one
// again when a restore fails after it.
type ImageImporter interface {
	Import(ctx context.Context, archivePath string) (api.Image, error)
	Delete(ctx context.Context, name string) error
}

// RestoreConfig is what Restore writes to.
type RestoreConfig struct {
	Store store.Store
	// KeyIDs are the secrets keys the cluster holds: a backup whose secrets
	// need another is refused.
	KeyIDs []string
	// Images imports the backup's image archives; nil refuses a backup
	// that holds some.
	Images ImageImporter
}

// ErrNotEmpty means the cluster already holds state a restore would mix
// with; a restore needs an empty cluster.
var ErrNotEmpty = errors.New("the cluster is not empty")

// ErrKeyMissing means the backup's secrets are sealed under a key the
// cluster does not hold.
var ErrKeyMissing = errors.New("the backup's secrets key is missing")

// Restored says what Restore wrote.
type Restored struct {
	Revision int64 `json:"revision"`
	Records  int   `json:"records"`
	Images   int   `json:"images"`
}

// CheckKeys refuses a backup whose secrets need a key not in known: they
// would be restored but could never be opened.
func CheckKeys(b *Backup, known []string) error {
	need := map[string]bool{}
	for _, id := range b.Header.SecretKeyIDs {
		need[id] = true
	}
	for _, r := range b.Records {
		if !strings.HasPrefix(r.Key, store.PrefixSecrets) {
			continue
		}
		var sec store.Secret
		if err := json.Unmarshal(r.Value, &sec); err != nil {
			return fmt.Errorf("%w: secret %s: %v", ErrCorrupt, r.Key, err)
		}
		need[sec.KeyID] = true
	}
	var missing []string
	for id := range need {
		if !slices.Contains(known, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: its secrets are sealed under key %s, and this cluster holds %s; start ebbd with the backup's key file (--secrets-key-file)",
			ErrKeyMissing, strings.Join(missing, ", "), orNone(known))
	}
	return nil
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// CheckEmpty refuses a store that holds anything under a kept prefix.
func CheckEmpty(ctx context.Context, s store.Store) error {
	for _, p := range KeptPrefixes() {
		kvs, _, err := s.List(ctx, p)
		if err != nil {
			return fmt.Errorf("list %s: %w", p, err)
		}
		if len(kvs) > 0 {
			return fmt.Errorf("%w: it holds %d keys under %s (%s first); restore into a fresh cluster", ErrNotEmpty, len(kvs), p, kvs[0].Key)
		}
	}
	return nil
}

// Restore loads a verified backup into an empty cluster: it checks the
// keys and that the cluster is empty, imports the images, then writes
// every record in one transaction, each key required absent. If that
// fails, it deletes the images it imported, so a failed restore leaves
// the cluster as it was.
func Restore(ctx context.Context, b *Backup, cfg RestoreConfig) (Restored, error) {
	if err := checkRecords(b); err != nil {
		return Restored{}, err
	}
	if err := CheckKeys(b, cfg.KeyIDs); err != nil {
		return Restored{}, err
	}
	if len(b.Images) > 0 && cfg.Images == nil {
		return Restored{}, errors.New("the backup holds images and this cluster cannot import images")
	}
	if err := CheckEmpty(ctx, cfg.Store); err != nil {
		return Restored{}, err
	}
	var imported []string
	rollback := func() {
		// The request's context may be what failed; clean up regardless.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, name := range imported {
			_ = cfg.Images.Delete(ctx, name)
		}
	}
	for _, img := range b.Images {
		got, err := cfg.Images.Import(ctx, img.Path)
		if err != nil {
			rollback()
			return Restored{}, fmt.Errorf("import image %s: %w", img.Name, err)
		}
		imported = append(imported, got.Name)
	}
	ops := make([]store.Op, len(b.Records))
	for i, r := range b.Records {
		ops[i] = store.Put(r.Key, r.Value, store.MustNotExist)
	}
	if len(ops) == 0 {
		return Restored{Images: len(imported)}, nil
	}
	rev, err := cfg.Store.Txn(ctx, ops...)
	if err != nil {
		rollback()
		if errors.Is(err, store.ErrConflict) {
			return Restored{}, fmt.Errorf("%w: %v", ErrNotEmpty, err)
		}
		return Restored{}, fmt.Errorf("write records: %w", err)
	}
	return Restored{Revision: rev, Records: len(b.Records), Images: len(imported)}, nil
}

// checkRecords refuses records a backup could not have held: outside the
// kept prefixes, or written twice. A checksummed file has none, but a
// hand-made one might.
func checkRecords(b *Backup) error {
	seen := make(map[string]struct{}, len(b.Records))
	for _, r := range b.Records {
		if class, _ := Classify(r.Key); class != Kept {
			return fmt.Errorf("%w: record %q is not state a backup holds", ErrCorrupt, r.Key)
		}
		if _, dup := seen[r.Key]; dup {
			return fmt.Errorf("%w: record %q twice", ErrCorrupt, r.Key)
		}
		seen[r.Key] = struct{}{}
	}
	return nil
}
