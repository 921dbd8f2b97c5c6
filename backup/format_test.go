package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sample writes a backup of two records and one image.
func sample(t testing.TB) []byte { return sampleSized(t, chunkSize+10) }

func sampleSized(t testing.TB, imageSize int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Revision: 42, CreatedAt: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), KeyID: "k1", SecretKeyIDs: []string{"k1"}, Records: 2, Images: 1})
	require.NoError(t, err)
	require.NoError(t, w.Record("functions/a", []byte(`{"name":"a"}`)))
	require.NoError(t, w.Record("secrets/default/s", []byte(`{"keyId":"k1"}`)))
	require.NoError(t, w.Image(Image{Name: "hello:latest", Digest: "sha256:00"}, strings.NewReader(strings.Repeat("x", imageSize))))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	b, err := Read(bytes.NewReader(sample(t)), Options{ImageDir: dir})
	require.NoError(t, err)
	assert.Equal(t, int64(42), b.Header.Revision)
	assert.Equal(t, "k1", b.Header.KeyID)
	assert.Equal(t, []Record{{"functions/a", []byte(`{"name":"a"}`)}, {"secrets/default/s", []byte(`{"keyId":"k1"}`)}}, b.Records)
	require.Len(t, b.Images, 1)
	assert.Equal(t, "hello:latest", b.Images[0].Name)
	assert.Equal(t, int64(chunkSize+10), b.Images[0].Size)
	data, err := os.ReadFile(b.Images[0].Path)
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("x", chunkSize+10), string(data))

	// Verifying only keeps nothing.
	b, err = Read(bytes.NewReader(sample(t)), Options{DiscardImages: true})
	require.NoError(t, err)
	assert.Empty(t, b.Images[0].Path)
}

func TestWriterCountsMustMatch(t *testing.T) {
	w, err := NewWriter(io.Discard, Header{Records: 2})
	require.NoError(t, err)
	require.NoError(t, w.Record("functions/a", nil))
	assert.ErrorContains(t, w.Close(), "header says 2")
}

// reseal replaces a backup's checksum with the right one for its bytes,
// as a careless tool (or an attacker) might.
func reseal(b []byte) []byte {
	body := b[:len(b)-5-32]
	return append(append([]byte{}, body...), sample32(body)...)
}

func sample32(body []byte) []byte {
	h := sha256.Sum256(body)
	return append([]byte{kindEnd, 0, 0, 0, 32}, h[:]...)
}

func TestReadRefuses(t *testing.T) {
	good := sample(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "state.db", Size: 3, Mode: 0o600})
	tw.Write([]byte("abc"))
	tw.Close()
	future := bytes.Clone(good)
	binary.BigEndian.PutUint16(future[len(Magic):], FormatVersion+1)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	// Dropping the last record frame and resealing: the header's count catches it.
	withoutImage := reseal(good[:bytes.Index(good, []byte{kindImage, 0, 0, 0})])

	for _, tc := range []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrNotBackup, "the file is empty"},
		{"random bytes", []byte("\x13\x37 random bytes that are no backup at all"), ErrNotBackup, "not the backup magic"},
		{"a tar", tarball.Bytes(), ErrNotBackup, "not the backup magic"},
		{"a gzip of a backup", gz.Bytes(), ErrNotBackup, "gzip"},
		{"json", []byte(`{"functions":[]}`), ErrNotBackup, "JSON"},
		{"magic only", []byte(Magic), ErrTruncated, "ends after 8 bytes"},
		{"part of the magic", []byte(Magic[:4]), ErrTruncated, "ends after 4 bytes"},
		{"future version", future, ErrVersion, "newer ebb"},
		{"truncated in the middle", good[:len(good)/2], ErrTruncated, "before its checksum"},
		{"without its checksum", good[:len(good)-37], ErrTruncated, "before its checksum"},
		{"one bit flipped", flipped, ErrCorrupt, ""},
		{"trailing data", append(bytes.Clone(good), 0), ErrCorrupt, "data after the checksum"},
		{"cut and resealed", withoutImage, ErrCorrupt, "header says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Read(bytes.NewReader(tc.in), Options{ImageDir: dir})
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), "\n", "one line")
			left, _ := os.ReadDir(dir)
			assert.Empty(t, left, "a refused backup leaves no image files")
		})
	}
}

func TestReadWantsImageDir(t *testing.T) {
	_, err := Read(bytes.NewReader(sample(t)), Options{})
	assert.ErrorContains(t, err, "no directory was given")
}

func FuzzRead(f *testing.F) {
	good := sampleSized(f, 100)
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte(Magic + "\x00\x01H\x00\x00\x00\x02{}E\x00\x00\x00\x20"))
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		b, err := Read(bytes.NewReader(in), Options{ImageDir: dir, MaxRecordBytes: 1 << 20})
		if err != nil {
			assert.Nil(t, b)
			left, _ := os.ReadDir(dir)
			assert.Empty(t, left)
			return
		}
		// Whatever is accepted was written by a Writer: writing it again
		// gives the same bytes, except for the image archives' chunking.
		if len(b.Images) == 0 {
			var out bytes.Buffer
			w, err := NewWriter(&out, b.Header)
			require.NoError(t, err)
			for _, r := range b.Records {
				require.NoError(t, w.Record(r.Key, r.Value))
			}
			require.NoError(t, w.Close())
			b2, err := Read(bytes.NewReader(out.Bytes()), Options{})
			require.NoError(t, err)
			assert.Equal(t, b.Records, b2.Records)
		}
	})
}

// TestReadMutations is FuzzRead's property over a fixed set of random
// mutations (cut, flipped and inserted bytes), so every run covers them
// without the fuzzing engine: Read never panics, and refuses without
// leaving files.
func TestReadMutations(t *testing.T) {
	good := sampleSized(t, 300)
	r := rand.New(rand.NewPCG(18, 18))
	dir := t.TempDir()
	for i := range 20000 {
		in := bytes.Clone(good)
		for range 1 + r.IntN(3) {
			if len(in) == 0 {
				break
			}
			switch r.IntN(3) {
			case 0:
				in[r.IntN(len(in))] ^= byte(1 + r.IntN(255))
			case 1:
				in = in[:r.IntN(len(in))]
			case 2:
				p := r.IntN(len(in) + 1)
				in = append(in[:p:p], append([]byte{byte(r.IntN(256))}, in[p:]...)...)
			}
		}
		b, err := Read(bytes.NewReader(in), Options{ImageDir: dir})
		if bytes.Equal(in, good) {
			require.NoError(t, err)
			require.NoError(t, os.Remove(b.Images[0].Path))
			continue
		}
		require.Error(t, err, "mutation %d accepted: %q", i, in)
		require.Nil(t, b)
		left, _ := os.ReadDir(dir)
		require.Empty(t, left, "mutation %d left files", i)
	}
}
