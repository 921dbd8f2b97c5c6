package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"testing"
)

// fuzzLimits keep each fuzz input cheap while still exercising every limit.
var fuzzLimits = Limits{
	MaxCompressedSize: 1 << 20,
	MaxSize:           4 << 20,
	MaxRatio:          20,
	RatioMinSize:      64 << 10,
	MaxEntries:        64,
	MaxEntrySize:      1 << 20,
	MaxUnpackedSize:   4 << 20,
	MaxLayerEntries:   256,
}

// memTarget is an in-memory spoolTarget: fuzzing the parser without a temp
// file per input runs several times more inputs per second.
type memTarget struct{ b []byte }

func (m *memTarget) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

func (m *memTarget) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}

// FuzzSpool feeds arbitrary bytes to the spooler: it must never panic, must
// refuse with an *ArchiveError (the input is in memory, so no I/O can fail),
// must never spool more than MaxSize, nor more than MaxRatio times the input
// once past RatioMinSize, and what it accepts must be a tar naming at least
// one normalized image, which a SpoolDir (with its temp file) accepts too,
// counting its bytes until Remove and leaving nothing behind after it. The
// table tests check that refusals leave no file.
//
//	go test -run=^$ -fuzz=FuzzSpool -fuzztime=60s ./internal/ociimage
//
// Go's fuzzer minimizes every new interesting input for up to a minute by
// default; -fuzzminimizetime=2s leaves more of a short run for exploring.
func FuzzSpool(f *testing.F) {
	built := builtImage(f, "hello:v1")
	seeds := [][]byte{
		built,
		gzipBytes(f, built),
		ociArchive(f, ociSpec{layerEncoding: "zstd"}),
		dockerArchive(f, dockerSpec{}),
		gzipBytes(f, dockerArchive(f, dockerSpec{repoTags: []string{"a:1", "a:2"}})),
		// Malicious and broken ones, so mutations start near the edges.
		mutate(f, built, func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{name: "../evil", body: []byte("x")})
		}),
		mutate(f, built, func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"})
		}),
		ociArchive(f, ociSpec{layer: makeTar(f, []tarEntry{{name: "/abs", body: []byte("x")}})}),
		ociArchive(f, ociSpec{layer: makeTar(f, []tarEntry{{name: "h", typ: tar.TypeLink, link: "../../x"}}), layerEncoding: "gzip"}),
		built[:len(built)/2],
		built[:len(built)-1024],
	}
	for _, s := range seeds {
		f.Add(s)
	}
	// A compression bomb, to start near the ratio check.
	f.Add(gzipBytes(f, makeTar(f, []tarEntry{{name: "zeros", body: make([]byte, 1<<20)}})))
	dir := f.TempDir()
	spool, _, err := OpenSpoolDir(dir, 2*fuzzLimits.MaxSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := &memTarget{}
		a, err := spoolTo(bytes.NewReader(data), mem, fuzzLimits, nil)
		if n := int64(len(mem.b)); n > fuzzLimits.MaxSize {
			t.Fatalf("spooled %d bytes, more than MaxSize", n)
		} else if n > fuzzLimits.RatioMinSize && n > fuzzLimits.MaxRatio*int64(len(data)) {
			t.Fatalf("spooled %d bytes from %d: more than MaxRatio times", n, len(data))
		}
		if err != nil {
			var ae *ArchiveError
			if !errors.As(err, &ae) {
				t.Fatalf("refusal is not an *ArchiveError: %T %v", err, err)
			}
			return
		}
		if len(a.Images) == 0 {
			t.Fatal("accepted an archive that names no image")
		}
		for _, im := range a.Images {
			if n, err := NormalizeName(im.Name); err != nil || n != im.Name {
				t.Fatalf("image name %q is not normalized", im.Name)
			}
		}
		if int64(len(mem.b)) != a.Size {
			t.Fatalf("spooled %d bytes, Archive.Size says %d", len(mem.b), a.Size)
		}
		onDisk, err := spool.Spool(bytes.NewReader(data), fuzzLimits)
		if err != nil {
			t.Fatalf("accepted in memory, refused on disk: %v", err)
		}
		if spool.Used() != onDisk.Size {
			t.Fatalf("the spool counts %d bytes for an archive of %d", spool.Used(), onDisk.Size)
		}
		spooled, err := os.ReadFile(onDisk.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(spooled, mem.b) {
			t.Fatal("the spooled file differs from the in-memory spool")
		}
		if err := onDisk.Remove(); err != nil {
			t.Fatal(err)
		}
		if spool.Used() != 0 {
			t.Fatalf("the spool still counts %d bytes after Remove", spool.Used())
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("%d files left behind", len(left))
		}
	})
}
