package imagestore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// TestExportImportsBack is what a backup with images does: export an
// image, lose it, and import the export (validated as any upload) again.
func TestExportImportsBack(t *testing.T) {
	e := setup(t)
	path, _ := spooled(t, "exported", ociimage.BuildOptions{Name: "exported:v1", Binary: helloBinary(t), BinaryPath: "/app/hello"})
	img, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)

	var archive bytes.Buffer
	require.NoError(t, e.imp.Export(context.Background(), "exported:v1", &archive))
	require.NoError(t, e.imp.Delete(context.Background(), img.Name))

	a, err := ociimage.Spool(bytes.NewReader(archive.Bytes()), t.TempDir(), ociimage.Limits{})
	require.NoError(t, err, "the export passes upload validation")
	back, err := e.imp.Import(context.Background(), a.Path)
	require.NoError(t, err)
	assert.Equal(t, img.Name, back.Name)
	assert.Equal(t, img.Digest, back.Digest)
	assert.Contains(t, runImage(t, e, back.Name), "hello from ebb")

	err = e.imp.Export(context.Background(), "missing:v1", &archive)
	assert.ErrorIs(t, err, imagestore.ErrNotFound)
}
