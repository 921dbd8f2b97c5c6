package imagestore

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/images/archive"
)

// Export writes the image as an OCI archive (with a docker manifest.json,
// as `ctr export` makes) for this node's platform: what Import takes back.
// Backups (package backup) use it to carry images to a fresh cluster.
func (i *Importer) Export(ctx context.Context, name string, w io.Writer) error {
	ctx = i.ns(ctx)
	img, err := i.get(ctx, name)
	if err != nil {
		return err
	}
	err = i.client.Export(ctx, w,
		archive.WithImage(i.client.ImageService(), img.Name),
		archive.WithPlatform(i.platform))
	if err != nil {
		return fmt.Errorf("export image %s: %w", img.Name, err)
	}
	return nil
}
