package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) imagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Push and list images",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	cmd.AddCommand(
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
				if a.json() {
					return writeJSON(a.stdout, img)
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
				if a.json() {
					if imgs == nil {
						imgs = []api.Image{}
					}
					return writeJSON(a.stdout, map[string][]api.Image{"images": imgs})
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
