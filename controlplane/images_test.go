package controlplane

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store/embedded"
)

// tarOfZeros is a tar with one entry of n zero bytes.
func tarOfZeros(t *testing.T, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: n}))
	_, err := tw.Write(make([]byte, n))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// A whole-upload gzip bomb (64 KiB that expand to 64 MiB) is refused with
// a 413 once it passes ociimage's ratio check, not after it has filled the
// spool: with room for less than the bomb, a refusal for any other reason
// would name the spool instead.
func TestGzipBombUploadIsRefusedEarly(t *testing.T) {
	a := newTestAPIWith(t, func(c *Config) { c.MaxSpoolBytes = ociimage.DefaultRatioMinSize + 1<<20 })
	var bomb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(tarOfZeros(t, 64<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	var e api.ErrorBody
	got := a.doRaw("POST", "/v1/images", "application/gzip", &bomb, testToken, &e)
	assert.Equal(t, http.StatusRequestEntityTooLarge, got, "message: %s", e.Error.Message)
	assert.Equal(t, api.CodeTooLarge, e.Error.Code)
	assert.Contains(t, e.Error.Message, "times the")
	assert.Zero(t, a.srv.spool.Used())
	left, err := os.ReadDir(a.spoolDir)
	require.NoError(t, err)
	assert.Empty(t, left)
}

// Uploads in progress share MaxSpoolBytes: while one is still arriving,
// another that would take the spool past it gets 503 with Retry-After.
func TestUploadsShareTheSpool(t *testing.T) {
	a := newTestAPIWith(t, func(c *Config) { c.MaxSpoolBytes = 6 << 20 })
	h := a.srv.Handler()
	post := func(body io.Reader) *http.Request {
		req := httptest.NewRequest("POST", "/v1/images", body)
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Authorization", "Bearer "+testToken)
		return req
	}
	second := tarOfZeros(t, 4<<20)
	// The bubble holds only the handler calls: the test server's listener
	// and the store were made outside it.
	synctest.Test(t, func(t *testing.T) {
		// The first upload sends its header and 4 MiB, then stalls.
		pr, pw := io.Pipe()
		first := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			h.ServeHTTP(first, post(pr))
			close(done)
		}()
		go func() { _, _ = pw.Write(second[:512+4<<20]) }()
		synctest.Wait()
		assert.Equal(t, int64(512+4<<20), a.srv.spool.Used())

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, post(bytes.NewReader(second)))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		assert.Equal(t, spoolRetryAfter, rec.Header().Get("Retry-After"))
		var e api.ErrorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
		assert.Equal(t, api.CodeUnavailable, e.Error.Code)
		assert.Contains(t, e.Error.Message, "spool is full")
		assert.Equal(t, int64(512+4<<20), a.srv.spool.Used(), "the refused upload gave its bytes back")

		// The first client gives up; its partial file goes.
		pw.CloseWithError(errors.New("client gone"))
		<-done
	})
	assert.Zero(t, a.srv.spool.Used())
	left, err := os.ReadDir(a.spoolDir)
	require.NoError(t, err)
	assert.Empty(t, left)
	a.pushHello() // room again
}

// A process killed during an upload leaves its spool file; the next start
// removes it.
func TestLeftoverSpoolFilesRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	spool := filepath.Join(dir, "spool")
	require.NoError(t, os.MkdirAll(spool, 0o700))
	leftover := filepath.Join(spool, "image-2718281828.tar")
	require.NoError(t, os.WriteFile(leftover, make([]byte, 1<<20), 0o600))

	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	_, err = New(Config{Token: testToken, SpoolDir: spool},
		Deps{Store: st, Images: &recordingImporter{}, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg, Gatherer: reg})
	require.NoError(t, err)
	assert.NoFileExists(t, leftover)
	assert.Contains(t, logs.String(), "removed leftover image uploads")
	assert.Contains(t, logs.String(), "bytes=1048576")
}

func TestConfigSpoolDefaults(t *testing.T) {
	c := Config{}
	c.setDefaults()
	assert.Equal(t, int64(DefaultMaxSpoolBytes), c.MaxSpoolBytes)
	c = Config{Token: testToken, SpoolDir: "/x", MaxSpoolBytes: -1}
	c.setDefaults()
	assert.ErrorContains(t, c.Validate(), "max spool bytes")
}

// curlHeaderRE finds the -H arguments of a curl command.
var curlHeaderRE = regexp.MustCompile(`-H\s+(?:'([^']*)'|"([^"]*)")`)

// The README's image push through curl is accepted. curl sends
// --data-binary as application/x-www-form-urlencoded unless told
// otherwise, which an image upload refuses with 415.
func TestReadmeImagePushIsAccepted(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var push string
	for _, cmd := range strings.Split(strings.ReplaceAll(string(readme), "\\\n", " "), "\n") {
		if strings.HasPrefix(cmd, "curl ") && strings.Contains(cmd, "/v1/images") && strings.Contains(cmd, "--data-binary") {
			push = cmd
		}
	}
	require.NotEmpty(t, push, "the README shows an image push with curl")
	contentType := "application/x-www-form-urlencoded"
	for _, m := range curlHeaderRE.FindAllStringSubmatch(push, -1) {
		name, value, _ := strings.Cut(m[1]+m[2], ":")
		if strings.EqualFold(strings.TrimSpace(name), "Content-Type") {
			contentType = strings.TrimSpace(value)
		}
	}
	a := newTestAPI(t)
	var img bytes.Buffer
	_, err = ociimage.Build(&img, ociimage.BuildOptions{Name: "hello:latest", Binary: []byte("x")})
	require.NoError(t, err)
	var e api.ErrorBody
	got := a.doRaw("POST", "/v1/images", contentType, &img, testToken, &e)
	assert.Equal(t, http.StatusCreated, got, "README: %s\nanswer: %s", push, e.Error.Message)
}
