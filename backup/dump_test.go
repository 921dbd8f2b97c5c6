package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeImages is a cluster's image store: archives by name.
type fakeImages struct {
	held      map[string]string
	failOn    string
	deleted   []string
	exportErr error
}

func (f *fakeImages) Export(_ context.Context, name string, w io.Writer) error {
	if f.exportErr != nil {
		return f.exportErr
	}
	_, err := io.WriteString(w, f.held[name])
	return err
}

func (f *fakeImages) Import(_ context.Context, path string) (api.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return api.Image{}, err
	}
	name := string(b[:bytes.IndexByte(b, '|')])
	if name == f.failOn {
		return api.Image{}, errors.New("no space left")
	}
	f.held[name] = string(b)
	return api.Image{Name: name}, nil
}

func (f *fakeImages) Delete(_ context.Context, name string) error {
	f.deleted = append(f.deleted, name)
	delete(f.held, name)
	return nil
}

func seed(t *testing.T, s store.Store) {
	t.Helper()
	ops := []store.Op{
		store.PutJSON(store.NamespaceKey("team"), store.Namespace{Name: "team"}, store.MustNotExist),
		store.PutJSON(store.FunctionKey("hello"), store.Function{Name: "hello", LatestRevision: "hello-00001"}, store.MustNotExist),
		store.PutJSON(store.RevisionKey("hello", "hello-00001"), store.Revision{Name: "hello-00001"}, store.MustNotExist),
		store.PutJSON(store.SecretKey("default", "db"), store.Secret{Name: "db", KeyID: "k1", WrappedKey: []byte("wrapped"), Values: map[string][]byte{"pw": []byte("sealed")}}, store.MustNotExist),
		store.PutJSON(store.TokenKey("t1"), store.Token{ID: "t1", SecretHash: "abc"}, store.MustNotExist),
		store.PutJSON(store.ImageKey("hello:latest"), store.Image{Name: "hello:latest", Digest: "sha256:1"}, store.MustNotExist),
		store.PutJSON(store.ImageKey("other:v1"), store.Image{Name: "other:v1", Digest: "sha256:2"}, store.MustNotExist),
		// Runtime state and a key nobody classified: left out.
		store.PutJSON(store.EndpointKey("hello-00001", "r1"), store.Endpoint{Addr: "10.0.0.1:80"}, store.MustNotExist),
		store.PutJSON(store.NodeKey("n1"), store.Node{}, store.MustNotExist),
		store.Put("leader", []byte("cp-1"), store.MustNotExist),
	}
	_, err := s.Txn(context.Background(), ops...)
	require.NoError(t, err)
}

func dump(t *testing.T, s store.Store, images ImageExporter) *Backup {
	t.Helper()
	var buf bytes.Buffer
	h, err := Dump(context.Background(), &buf, DumpConfig{Store: s, KeyID: "k1", Images: images, Now: time.Unix(100, 0)})
	require.NoError(t, err)
	b, err := Read(&buf, Options{ImageDir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, h, b.Header)
	return b
}

func TestDumpAndRestore(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	seed(t, src)
	_, rev, err := src.List(ctx, "")
	require.NoError(t, err)
	images := &fakeImages{held: map[string]string{"hello:latest": "hello:latest|layers", "other:v1": "other:v1|layers"}}

	b := dump(t, src, images)
	assert.Equal(t, rev, b.Header.Revision)
	assert.Equal(t, []string{"k1"}, b.Header.SecretKeyIDs)
	assert.Equal(t, map[string]int{store.PrefixEndpoints: 1, store.PrefixNodes: 1, "other": 1}, b.Header.Skipped)
	require.Len(t, b.Images, 2)

	dst := openStore(t)
	into := &fakeImages{held: map[string]string{}}
	res, err := Restore(ctx, b, RestoreConfig{Store: dst, KeyIDs: []string{"k1"}, Images: into})
	require.NoError(t, err)
	assert.Equal(t, 7, res.Records)
	assert.Equal(t, 2, res.Images)
	assert.Equal(t, images.held, into.held)

	want, _, err := src.List(ctx, "")
	require.NoError(t, err)
	got, _, err := dst.List(ctx, "")
	require.NoError(t, err)
	var kept []string
	for _, kv := range want {
		if c, _ := Classify(kv.Key); c == Kept {
			kept = append(kept, kv.Key+"="+string(kv.Value))
		}
	}
	var restored []string
	for _, kv := range got {
		restored = append(restored, kv.Key+"="+string(kv.Value))
	}
	assert.Equal(t, kept, restored, "exactly the kept records, byte for byte (secrets still sealed)")

	// Once restored, the cluster is no longer empty.
	_, err = Restore(ctx, b, RestoreConfig{Store: dst, KeyIDs: []string{"k1"}, Images: into})
	require.ErrorIs(t, err, ErrNotEmpty)
	assert.Contains(t, err.Error(), "restore into a fresh cluster")
}

func TestRestoreRefusesWithoutTouching(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	seed(t, src)
	images := &fakeImages{held: map[string]string{"hello:latest": "hello:latest|layers", "other:v1": "other:v1|layers"}}
	b := dump(t, src, images)

	for _, tc := range []struct {
		name    string
		cfg     func(dst store.Store, into *fakeImages) RestoreConfig
		prepare func(t *testing.T, dst store.Store)
		want    error
		msg     string
	}{
		{
			name: "secrets key missing",
			cfg: func(dst store.Store, into *fakeImages) RestoreConfig {
				return RestoreConfig{Store: dst, KeyIDs: []string{"k2"}, Images: into}
			},
			want: ErrKeyMissing, msg: "sealed under key k1, and this cluster holds k2",
		},
		{
			name: "not empty",
			cfg: func(dst store.Store, into *fakeImages) RestoreConfig {
				return RestoreConfig{Store: dst, KeyIDs: []string{"k1"}, Images: into}
			},
			prepare: func(t *testing.T, dst store.Store) {
				_, err := dst.Txn(ctx, store.Put(store.FunctionKey("mine"), []byte("{}"), store.MustNotExist))
				require.NoError(t, err)
			},
			want: ErrNotEmpty, msg: "functions/mine",
		},
		{
			name: "an image fails to import",
			cfg: func(dst store.Store, into *fakeImages) RestoreConfig {
				into.failOn = "other:v1"
				return RestoreConfig{Store: dst, KeyIDs: []string{"k1"}, Images: into}
			},
			msg: "import image other:v1: no space left",
		},
		{
			name: "no image importer",
			cfg: func(dst store.Store, into *fakeImages) RestoreConfig {
				return RestoreConfig{Store: dst, KeyIDs: []string{"k1"}}
			},
			msg: "cannot import images",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := openStore(t)
			if tc.prepare != nil {
				tc.prepare(t, dst)
			}
			before, _, err := dst.List(ctx, "")
			require.NoError(t, err)
			into := &fakeImages{held: map[string]string{}}
			_, err = Restore(ctx, b, tc.cfg(dst, into))
			require.Error(t, err)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.Contains(t, err.Error(), tc.msg)
			after, _, err := dst.List(ctx, "")
			require.NoError(t, err)
			assert.Equal(t, before, after, "the store is untouched")
			assert.Empty(t, into.held, "no image is left imported")
		})
	}
}

func TestRestoreRollsBackImagesOnConflict(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	seed(t, src)
	images := &fakeImages{held: map[string]string{"hello:latest": "hello:latest|x", "other:v1": "other:v1|y"}}
	b := dump(t, src, images)
	// A function appears between the emptiness check and the write: the
	// transaction's MustNotExist catches it and the images go again.
	dst := &racingStore{Store: openStore(t)}
	into := &fakeImages{held: map[string]string{}}
	_, err := Restore(ctx, b, RestoreConfig{Store: dst, KeyIDs: []string{"k1"}, Images: into})
	require.ErrorIs(t, err, ErrNotEmpty)
	assert.Empty(t, into.held)
	assert.ElementsMatch(t, []string{"hello:latest", "other:v1"}, into.deleted)
}

// racingStore writes a function (one the backup holds too) just before
// the first transaction.
type racingStore struct {
	store.Store
	raced bool
}

func (r *racingStore) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if !r.raced {
		r.raced = true
		if _, err := r.Store.Txn(ctx, store.Put(store.FunctionKey("hello"), []byte("{}"), store.MustNotExist)); err != nil {
			return 0, err
		}
	}
	return r.Store.Txn(ctx, ops...)
}

func TestDumpFailsOnExportError(t *testing.T) {
	src := openStore(t)
	seed(t, src)
	_, err := Dump(context.Background(), io.Discard, DumpConfig{Store: src, Images: &fakeImages{exportErr: fmt.Errorf("content missing")}})
	assert.ErrorContains(t, err, "back up image hello:latest: read image hello:latest: content missing")
}
