package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gzipBomb streams a gzipped tar of 256 MiB entries of zeros, without end:
// about 1 MB on the wire per GB spooled, the shape of the 2.75 MB upload
// that once wrote 2.6 GB to the spool. Each entry is within MaxEntrySize.
// It is made as it is read, so a test costs only what the spooler reads.
func gzipBomb(t *testing.T) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzip.BestCompression)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		tw := tar.NewWriter(zw)
		chunk := make([]byte, 1<<20)
		for i := 0; err == nil; i++ {
			err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("zeros-%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: 256 << 20})
			for j := 0; j < 256 && err == nil; j++ {
				_, err = tw.Write(chunk)
			}
		}
		pw.CloseWithError(err)
	}()
	// Ends the writer above once the spooler has stopped reading.
	t.Cleanup(func() { pr.CloseWithError(errors.New("test over")) })
	return pr
}

// countingTarget counts what the spooler writes and keeps none of it.
type countingTarget struct{ n int64 }

func (c *countingTarget) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
func (c *countingTarget) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("countingTarget keeps nothing")
}

func TestGzipBombIsRefusedEarly(t *testing.T) {
	var spooled countingTarget
	_, err := spoolTo(gzipBomb(t), &spooled, Limits{}.WithDefaults(), nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "times the")
	assert.LessOrEqual(t, spooled.n, int64(DefaultRatioMinSize), "a bomb is refused before more than RatioMinSize reaches the spool")
	assert.Greater(t, spooled.n, int64(DefaultRatioMinSize)/2, "small compressible archives are not refused")
}

func TestGzipBombsInParallelStayBounded(t *testing.T) {
	dir := t.TempDir()
	d, _, err := OpenSpoolDir(dir, DefaultMaxSize)
	require.NoError(t, err)
	const uploads = 3
	errs := make(chan error, uploads)
	for range uploads {
		bomb := gzipBomb(t)
		go func() {
			_, err := d.Spool(bomb, Limits{})
			errs <- err
		}()
	}
	for range uploads {
		err := <-errs
		assert.ErrorIs(t, err, ErrTooLarge)
		assert.Contains(t, err.Error(), "times the")
	}
	assert.Zero(t, d.Used())
	requireEmptyDir(t, dir)
}

// A compressed archive past RatioMinSize passes while it stays under the ratio.
func TestCompressedArchiveUnderTheRatioPasses(t *testing.T) {
	noise := make([]byte, 256<<10)
	_, _ = rand.Read(noise)
	layer := makeTar(t, []tarEntry{{name: "noise", body: noise}})
	archive := gzipBytes(t, ociArchive(t, ociSpec{layer: layer}))
	a, err := Spool(bytes.NewReader(archive), t.TempDir(), Limits{RatioMinSize: 64 << 10, MaxRatio: 2})
	require.NoError(t, err)
	assert.Greater(t, a.Size, int64(64<<10))
	require.NoError(t, a.Remove())
}

func TestSpoolDirCountsAcceptedArchivesUntilRemoved(t *testing.T) {
	archive := builtImage(t, "hello:v1")
	size := int64(len(archive))
	dir := t.TempDir()
	d, _, err := OpenSpoolDir(dir, 2*size+size/2)
	require.NoError(t, err)

	a1, err := d.Spool(bytes.NewReader(archive), Limits{})
	require.NoError(t, err)
	a2, err := d.Spool(bytes.NewReader(archive), Limits{})
	require.NoError(t, err)
	assert.Equal(t, 2*size, d.Used())

	_, err = d.Spool(bytes.NewReader(archive), Limits{})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrSpoolFull)
	var ae *ArchiveError
	assert.False(t, errors.As(err, &ae), "a full spool is not the archive's fault")
	assert.Equal(t, 2*size, d.Used(), "a refused upload gives its bytes back")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, left, 2)

	require.NoError(t, a1.Remove())
	assert.Equal(t, size, d.Used())
	a3, err := d.Spool(bytes.NewReader(archive), Limits{})
	require.NoError(t, err, "room again once an archive is removed")

	for _, a := range []*Archive{a2, a3} {
		require.NoError(t, a.Remove())
	}
	require.NoError(t, a3.Remove(), "a second Remove gives nothing back twice")
	assert.Zero(t, d.Used())
	requireEmptyDir(t, dir)
}

func TestSpoolDirRefusesAnUploadLargerThanItsTotal(t *testing.T) {
	archive := builtImage(t, "hello:v1")
	dir := t.TempDir()
	d, _, err := OpenSpoolDir(dir, int64(len(archive))/2)
	require.NoError(t, err)
	_, err = d.Spool(bytes.NewReader(archive), Limits{})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTooLarge, "retrying cannot help: 413, not 503")
	assert.NotErrorIs(t, err, ErrSpoolFull)
	assert.Zero(t, d.Used())
	requireEmptyDir(t, dir)
}

// Three uploads arrive at once, each still sending: the third finds the
// spool full while the first two hold their bytes, and the spool never
// holds more than its total.
func TestSpoolDirBoundsUploadsInProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const total = 10 << 20
		dir := t.TempDir()
		d, _, err := OpenSpoolDir(dir, total)
		require.NoError(t, err)

		type upload struct {
			pw   *io.PipeWriter
			err  error
			done bool
		}
		start := func() *upload {
			pr, pw := io.Pipe()
			u := &upload{pw: pw}
			go func() {
				_, u.err = d.Spool(pr, Limits{})
				u.done = true
				pr.CloseWithError(errors.New("spool returned")) // unblocks a sender
			}()
			return u
		}
		// Each upload is a tar of one 8 MiB entry, sent 4 MiB at a time.
		var hdr bytes.Buffer
		require.NoError(t, tar.NewWriter(&hdr).WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: 8 << 20}))
		chunk := make([]byte, 4<<20)
		send := func(u *upload, b ...[]byte) {
			go func() {
				for _, p := range b {
					if _, err := u.pw.Write(p); err != nil {
						return
					}
				}
			}()
			synctest.Wait() // the spooler has taken all it was sent, or returned
		}

		a, b, c := start(), start(), start()
		send(a, hdr.Bytes(), chunk)
		assert.Equal(t, int64(512+4<<20), d.Used())
		send(b, hdr.Bytes(), chunk)
		assert.Equal(t, int64(2*(512+4<<20)), d.Used())
		send(c, hdr.Bytes(), chunk)
		require.True(t, c.done, "the third upload is refused while it is still arriving")
		assert.ErrorIs(t, c.err, ErrSpoolFull)
		assert.Equal(t, int64(2*(512+4<<20)), d.Used(), "the refused upload gave its bytes back")
		assert.False(t, a.done || b.done, "the first two go on")

		// The clients give up; their partial files go too.
		a.pw.CloseWithError(errors.New("client gone"))
		b.pw.CloseWithError(errors.New("client gone"))
		synctest.Wait()
		require.True(t, a.done && b.done)
		assert.Error(t, a.err)
		assert.Zero(t, d.Used())
		requireEmptyDir(t, dir)
	})
}

func TestOpenSpoolDirRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	d, left, err := OpenSpoolDir(dir, 1<<20)
	require.NoError(t, err, "creates a missing dir")
	assert.Equal(t, Leftovers{}, left)
	fi, err := os.Stat(d.Dir())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// What a process killed during an upload leaves, beside what is not ours.
	f, err := os.CreateTemp(dir, spoolPattern)
	require.NoError(t, err)
	_, err = f.Write(make([]byte, 3000))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "image-2.tar"), []byte("partial"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("keep"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "image-dir.tar"), 0o700))

	_, left, err = OpenSpoolDir(dir, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, Leftovers{Files: 2, Bytes: 3000 + int64(len("partial"))}, left)
	names := []string{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"notes.txt", "image-dir.tar"}, names)
}

func TestOpenSpoolDirNeedsAPositiveTotal(t *testing.T) {
	_, _, err := OpenSpoolDir(t.TempDir(), 0)
	assert.Error(t, err)
}
