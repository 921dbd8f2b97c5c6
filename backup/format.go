package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The file layout:
//
//	magic (8 bytes) | format version (uint16, big endian) | frames...
//
// and each frame is a kind byte, a payload length (uint32, big endian) and
// the payload. The frames are, in order: one header (H, JSON), the records
// (R: uvarint key length, key, value), the images (I: JSON name and digest,
// then its archive in D chunks), and the end (E: the SHA-256 of every byte
// before this frame, magic included). Nothing may follow E.
const (
	// Magic opens every backup. Like PNG's, its first byte is not ASCII
	// and it holds a newline, so text-mode mangling shows.
	Magic = "\x89EBBBAK\n"
	// FormatVersion is the version this package writes and the newest it
	// reads.
	FormatVersion = 1

	kindHeader = 'H'
	kindRecord = 'R'
	kindImage  = 'I'
	kindData   = 'D'
	kindEnd    = 'E'

	// maxFrame bounds one frame's payload: a record or one image chunk.
	maxFrame = 64 << 20
	// chunkSize is the size of the image chunks the writer makes.
	chunkSize = 1 << 20
)

// Errors that Read wraps; every one means the cluster must not be touched.
var (
	ErrNotBackup = errors.New("not an ebb backup")
	ErrTruncated = errors.New("backup is truncated")
	ErrCorrupt   = errors.New("backup is corrupt")
	ErrVersion   = errors.New("backup format is newer than this ebb reads")
)

// Header describes a backup.
type Header struct {
	// Revision is the store revision the backup reflects.
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"createdAt"`
	// KeyID is the cluster's current secrets key-encryption key when the
	// backup was taken; SecretKeyIDs are the keys its sealed secrets need.
	// Without those keys (the key file, kept apart from backups) the
	// secrets cannot be opened.
	KeyID        string   `json:"keyId,omitempty"`
	SecretKeyIDs []string `json:"secretKeyIds,omitempty"`
	// Records and Images count what follows, so that a file cut at a frame
	// boundary and re-checksummed is still refused.
	Records int `json:"records"`
	Images  int `json:"images"`
	// Skipped counts the keys left out by prefix; "other" for keys under
	// no known prefix.
	Skipped map[string]int `json:"skipped,omitempty"`
	// EbbVersion is the version of the ebbd that wrote it, for people.
	EbbVersion string `json:"ebbVersion,omitempty"`
}

// Record is one store key and its value.
type Record struct {
	Key   string
	Value []byte
}

// Image names an image archive in a backup.
type Image struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// Writer writes a backup. Call Record for each record, then Image for each
// image, then Close, which writes the checksum; a file without it is
// refused, so an interrupted write is never taken for a backup.
type Writer struct {
	w               *bufio.Writer
	sum             hash.Hash
	h               Header
	records, images int
	inImages        bool
	err             error
}

// NewWriter writes the magic, the version and h.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	sum := sha256.New()
	bw := &Writer{w: bufio.NewWriterSize(io.MultiWriter(w, sum), 64<<10), sum: sum, h: h}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode backup header: %w", err)
	}
	var v [2]byte
	binary.BigEndian.PutUint16(v[:], FormatVersion)
	bw.write([]byte(Magic))
	bw.write(v[:])
	bw.frame(kindHeader, head)
	return bw, bw.err
}

func (w *Writer) write(p []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(p)
	}
}

func (w *Writer) frame(kind byte, payload ...[]byte) {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	if n > maxFrame && w.err == nil {
		w.err = fmt.Errorf("backup frame of %d bytes exceeds %d", n, maxFrame)
	}
	var head [5]byte
	head[0] = kind
	binary.BigEndian.PutUint32(head[1:], uint32(n))
	w.write(head[:])
	for _, p := range payload {
		w.write(p)
	}
}

// Record writes one record. Records come before images.
func (w *Writer) Record(key string, value []byte) error {
	if w.inImages {
		return errors.New("backup: record after an image")
	}
	w.records++
	w.frame(kindRecord, binary.AppendUvarint(nil, uint64(len(key))), []byte(key), value)
	return w.err
}

// Image writes an image and its archive, read from r to EOF.
func (w *Writer) Image(img Image, r io.Reader) error {
	w.inImages = true
	w.images++
	meta, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("encode image %s: %w", img.Name, err)
	}
	w.frame(kindImage, meta)
	buf := make([]byte, chunkSize)
	for w.err == nil {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			w.frame(kindData, buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read image %s: %w", img.Name, err)
		}
	}
	return w.err
}

// Close checks the counts against the header and writes the checksum. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.records != w.h.Records || w.images != w.h.Images {
		return fmt.Errorf("backup: wrote %d records and %d images, header says %d and %d", w.records, w.images, w.h.Records, w.h.Images)
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	// The frame header is not part of the sum: the sum covers what is
	// before the E frame.
	sum := w.sum.Sum(nil)
	w.frame(kindEnd, sum)
	if w.err != nil {
		return w.err
	}
	return w.w.Flush()
}

// Options bound what Read accepts.
type Options struct {
	// ImageDir is where image archives are written, one file each. Empty
	// refuses a backup with images unless DiscardImages.
	ImageDir string
	// DiscardImages reads and checks image archives without keeping them
	// (to verify a file).
	DiscardImages bool
	// MaxRecordBytes bounds the records' total size (they are held in
	// memory); 0 means 1 GiB.
	MaxRecordBytes int64
	// MaxImageBytes bounds each image archive; 0 means no bound.
	MaxImageBytes int64
}

// Backup is a read and verified backup.
type Backup struct {
	Header  Header
	Records []Record
	Images  []ImageFile
}

// ImageFile is an image read from a backup: its archive is at Path (empty
// when images were discarded), Size bytes long.
type ImageFile struct {
	Image
	Path string
	Size int64
}

// reader hashes what it reads and counts it, for messages.
type reader struct {
	r   *bufio.Reader
	sum hash.Hash
	n   int64
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.sum.Write(p[:n])
	r.n += int64(n)
	return n, err
}

// Read reads and verifies a backup: it returns an error wrapping
// ErrNotBackup, ErrTruncated, ErrCorrupt or ErrVersion, or a backup whose
// every byte the checksum covered. Image archives go to files in
// opt.ImageDir; on error Read removes those it made.
func Read(in io.Reader, opt Options) (b *Backup, err error) {
	if opt.MaxRecordBytes == 0 {
		opt.MaxRecordBytes = 1 << 30
	}
	r := &reader{r: bufio.NewReaderSize(in, 64<<10), sum: sha256.New()}
	b = &Backup{}
	made := b // b is nil on the error returns
	defer func() {
		if err != nil {
			for _, img := range made.Images {
				if img.Path != "" {
					os.Remove(img.Path)
				}
			}
			b = nil
		}
	}()
	if err := readMagic(r); err != nil {
		return nil, err
	}
	kind, payload, err := readFrame(r, nil)
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, fmt.Errorf("%w: frame %q where the header belongs", ErrCorrupt, kind)
	}
	if err := json.Unmarshal(payload, &b.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if b.Header.Records < 0 || b.Header.Images < 0 {
		return nil, fmt.Errorf("%w: header counts %d records and %d images", ErrCorrupt, b.Header.Records, b.Header.Images)
	}
	var (
		recordBytes int64
		img         *os.File
		cur         *ImageFile // the last of b.Images, set again after each append
	)
	closeImage := func() error {
		if img == nil {
			return nil
		}
		err := img.Close()
		img = nil
		return err
	}
	defer closeImage()
	buf := make([]byte, 0, 64<<10)
	for {
		before := r.sum.Sum(nil)
		kind, payload, err = readFrame(r, buf[:0])
		if err != nil {
			return b, err
		}
		buf = payload[:0]
		switch kind {
		case kindRecord:
			if len(b.Images) > 0 {
				return b, fmt.Errorf("%w: a record after an image", ErrCorrupt)
			}
			klen, n := binary.Uvarint(payload)
			if n <= 0 || klen == 0 || klen > uint64(len(payload)-n) {
				return b, fmt.Errorf("%w: record %d: bad key length", ErrCorrupt, len(b.Records)+1)
			}
			if recordBytes += int64(len(payload)); recordBytes > opt.MaxRecordBytes {
				return b, fmt.Errorf("%w: records exceed %d bytes", ErrCorrupt, opt.MaxRecordBytes)
			}
			key := string(payload[n : n+int(klen)])
			val := bytes.Clone(payload[n+int(klen):])
			b.Records = append(b.Records, Record{Key: key, Value: val})
		case kindImage:
			if err := closeImage(); err != nil {
				return b, err
			}
			var meta Image
			if err := json.Unmarshal(payload, &meta); err != nil || meta.Name == "" {
				return b, fmt.Errorf("%w: image %d: bad description", ErrCorrupt, len(b.Images)+1)
			}
			b.Images = append(b.Images, ImageFile{Image: meta})
			cur = &b.Images[len(b.Images)-1]
			switch {
			case opt.DiscardImages:
			case opt.ImageDir == "":
				return b, fmt.Errorf("backup holds images and no directory was given for them")
			default:
				img, err = os.Create(filepath.Join(opt.ImageDir, "image-"+strconv.Itoa(len(b.Images))+".tar"))
				if err != nil {
					return b, fmt.Errorf("keep image %s: %w", meta.Name, err)
				}
				cur.Path = img.Name()
			}
		case kindData:
			if cur == nil {
				return b, fmt.Errorf("%w: image data before any image", ErrCorrupt)
			}
			cur.Size += int64(len(payload))
			if opt.MaxImageBytes > 0 && cur.Size > opt.MaxImageBytes {
				return b, fmt.Errorf("%w: image %s exceeds %d bytes", ErrCorrupt, cur.Name, opt.MaxImageBytes)
			}
			if img != nil {
				if _, err := img.Write(payload); err != nil {
					return b, fmt.Errorf("keep image %s: %w", cur.Name, err)
				}
			}
		case kindEnd:
			if !bytes.Equal(payload, before) {
				return b, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
			}
			if _, err := r.r.ReadByte(); err != io.EOF {
				return b, fmt.Errorf("%w: data after the checksum", ErrCorrupt)
			}
			if len(b.Records) != b.Header.Records || len(b.Images) != b.Header.Images {
				return b, fmt.Errorf("%w: holds %d records and %d images, header says %d and %d", ErrCorrupt, len(b.Records), len(b.Images), b.Header.Records, b.Header.Images)
			}
			if err := closeImage(); err != nil {
				return b, err
			}
			return b, nil
		default:
			return b, fmt.Errorf("%w: unknown frame kind %q at byte %d", ErrCorrupt, kind, r.n-int64(len(payload))-5)
		}
	}
}

func readMagic(r *reader) error {
	head := make([]byte, len(Magic)+2)
	n, err := io.ReadFull(r, head)
	if m := min(n, len(Magic)); n == 0 || string(head[:m]) != Magic[:m] {
		return fmt.Errorf("%w: %s", ErrNotBackup, sniff(head[:n]))
	}
	if err != nil {
		return fmt.Errorf("%w: it ends after %d bytes", ErrTruncated, n)
	}
	if v := binary.BigEndian.Uint16(head[len(Magic):]); v != FormatVersion {
		if v > FormatVersion {
			return fmt.Errorf("%w: format %d, this ebb reads %d; restore with a newer ebb", ErrVersion, v, FormatVersion)
		}
		return fmt.Errorf("%w: unknown format version %d", ErrCorrupt, v)
	}
	return nil
}

// sniff names what a file that is not a backup looks like.
func sniff(head []byte) string {
	switch {
	case len(head) == 0:
		return "the file is empty"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "it is a gzip file"
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "it is a zip file"
	case bytes.HasPrefix(head, []byte("{")) || bytes.HasPrefix(head, []byte("[")):
		return "it looks like JSON"
	}
	return fmt.Sprintf("it starts with %q, not the backup magic", head)
}

// readFrame reads one frame into buf (grown as needed).
func readFrame(r *reader, buf []byte) (byte, []byte, error) {
	var head [5]byte
	if n, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, truncated(r, n, err)
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes at byte %d", ErrCorrupt, n, r.n-5)
	}
	if cap(buf) < int(n) {
		// Grow with what arrives, not with what the length claims, so a
		// bogus length cannot make Read allocate it.
		buf = buf[:0]
		if _, err := io.Copy(bytesWriter{&buf}, io.LimitReader(r, int64(n))); err != nil {
			return 0, nil, err
		}
		if len(buf) < int(n) {
			return 0, nil, truncated(r, 0, io.ErrUnexpectedEOF)
		}
		return head[0], buf, nil
	}
	buf = buf[:n]
	if m, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, truncated(r, m, err)
	}
	return head[0], buf, nil
}

type bytesWriter struct{ b *[]byte }

func (w bytesWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

func truncated(r *reader, _ int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: it ends after %d bytes, before its checksum", ErrTruncated, r.n)
	}
	return fmt.Errorf("read backup: %w", err)
}
