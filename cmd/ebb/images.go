package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	digest "github.com/opencontainers/go-digest"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
)

func (a *app) imagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Push and list images",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	cmd.AddCommand(
		a.imagesBuildCmd(),
		&cobra.Command{
			Use:   "push FILE",
			Short: "Upload an OCI image layout tar or a docker-save tar (gzip allowed; - reads stdin)",
			Args:  exactArgs("FILE"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				img, err := a.pushArchive(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				if a.structured() {
					return a.writeOut(img)
				}
				return printImages(a.stdout, []api.Image{img})
			},
		},
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List the images pushed so far",
			Args:    exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				imgs, err := c.ListImages(cmd.Context())
				if err != nil {
					return fmt.Errorf("list images: %w", err)
				}
				sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
				if a.structured() {
					if imgs == nil {
						imgs = []api.Image{}
					}
					return a.writeOut(map[string][]api.Image{"images": imgs})
				}
				return printImages(a.stdout, imgs)
			},
		},
	)
	return cmd
}

// groupRunE makes a command that only groups others print its help, and
// reject an unknown subcommand as a usage error rather than ignore it.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return cmd.Help()
}

// pushArchive streams an image archive file ("-" for stdin) to the API.
func (a *app) pushArchive(ctx context.Context, c *api.Client, path string) (api.Image, error) {
	var r io.Reader = a.stdin
	what := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return api.Image{}, &usageError{err: fmt.Errorf("image archive: %w", err)}
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			if fi.IsDir() {
				return api.Image{}, usagef("image archive %s is a directory; pass the tar file", path)
			}
			what = fmt.Sprintf("%s (%s)", path, bytesIEC(fi.Size()))
		}
		r = f
	}
	fmt.Fprintf(a.stderr, "Pushing %s\n", what)
	img, err := c.PushImage(ctx, r)
	if err != nil {
		return api.Image{}, fmt.Errorf("push image %s: %w", path, err)
	}
	fmt.Fprintf(a.stderr, "Pushed %s (%s)\n", img.Name, shortDigest(img.Digest))
	return img, nil
}

func printImages(w io.Writer, imgs []api.Image) error {
	t := newTable(w, "NAME", "DIGEST", "SIZE")
	for _, img := range imgs {
		t.row(img.Name, shortDigest(img.Digest), bytesIEC(img.Size))
	}
	return t.flush()
}

func (a *app) imagesBuildCmd() *cobra.Command {
	var name, out string
	var port int
	cmd := &cobra.Command{
		Use:   "build BINARY --name REF -o FILE",
		Short: "Package a static Linux executable as an OCI image layout tar, without pushing it",
		Long: `Package a static Linux executable as an OCI image layout tar: one layer
holding the binary at /app/<name> as the entrypoint, plus the minimal /etc
files a Go server expects. The same inputs always give the same bytes.
Push the file with 'ebb images push', or do both with 'ebb deploy --binary'.`,
		Example: `  CGO_ENABLED=0 go build -o hello ./examples/hello
  ebb images build hello --name hello:latest -o hello.oci.tar`,
		Args: exactArgs("BINARY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return usagef("--name is required, such as --name hello:latest")
			}
			if _, err := ociimage.NormalizeName(name); err != nil {
				return usagef("--name: %v", err)
			}
			if out == "" {
				return usagef("-o FILE is required (- writes to stdout)")
			}
			if port < 0 || port > 65535 {
				return usagef("--port %d: must be from 1 to 65535", port)
			}
			opts, err := readBinary(args[0])
			if err != nil {
				return err
			}
			opts.Name = name
			if port > 0 {
				opts.ExposedPorts = []int{port}
			}
			d, size, err := a.writeImage(out, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Wrote %s: image %s, %s, %s\n", out, name, shortDigest(d.String()), bytesIEC(size))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "image reference, such as hello:latest (required)")
	// Shadows the global --output, as in 'go build -o' and 'docker save -o'.
	f.StringVarP(&out, "output", "o", "", "file to write, - for stdout (required)")
	f.IntVar(&port, "port", 0, "port to record as exposed in the image config")
	return cmd
}

// writeImage builds the archive into a temporary file next to path and
// renames it into place, so a failed build never leaves a partial file.
func (a *app) writeImage(path string, opts ociimage.BuildOptions) (digest.Digest, int64, error) {
	if path == "-" {
		cw := &countingWriter{w: a.stdout}
		d, err := ociimage.Build(cw, opts)
		if err != nil {
			return "", 0, fmt.Errorf("build image: %w", err)
		}
		return d, cw.n, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ebb-image-*.tar")
	if err != nil {
		return "", 0, fmt.Errorf("build image: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	cw := &countingWriter{w: tmp}
	d, err := ociimage.Build(cw, opts)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", 0, fmt.Errorf("build image: %w", err)
	}
	return d, cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
