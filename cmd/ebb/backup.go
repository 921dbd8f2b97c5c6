package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/backup"
)

// fileOutput marks a command whose -o names a file (as curl's does), not
// the output format.
const fileOutput = "ebb.io/file-output"

func (a *app) backupCmd() *cobra.Command {
	var withImages bool
	cmd := &cobra.Command{
		Use:   "backup -o FILE [--with-images]",
		Short: "Save the cluster's state to a backup file (admin only)",
		Long: `Save the cluster's desired state, at one store revision, to FILE:
namespaces, functions and revisions with their traffic, rollouts, cron
triggers, jobs, secrets (still sealed), tokens (hashes only) and image
references; --with-images adds the images themselves. Runtime state
(replicas, endpoints, placement, nodes) is not saved: a restored cluster
starts every function from zero.

The file is written beside FILE, checked from end to end, and only then
renamed to FILE. Here -o names that file.

The secrets in it can be opened only with the cluster's secrets key file
(<data-dir>/secrets.key, or ebbd's --secrets-key-file). Keep a copy of that
file, apart from the backups: without it, a restore is refused.`,
		Annotations: map[string]string{fileOutput: "true"},
		Args:        exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := a.output
			if path == "" || path == "table" {
				return usagef("missing -o FILE (usage: %s)", cmd.UseLine())
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var (
				h    backup.Header
				size int64
			)
			err = backup.WriteFileAtomic(path, func(f *os.File) error {
				body, err := c.Backup(cmd.Context(), withImages)
				if err != nil {
					return err
				}
				defer body.Close()
				if size, err = io.Copy(f, body); err != nil {
					return fmt.Errorf("download: %w", err)
				}
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				b, err := backup.Read(f, backup.Options{DiscardImages: true})
				if err != nil {
					return fmt.Errorf("the downloaded backup does not verify: %w", err)
				}
				h = b.Header
				return nil
			})
			if err != nil {
				return fmt.Errorf("back up to %s: %w", path, err)
			}
			fmt.Fprintf(a.stdout, "backup of store revision %d written to %s: %d records, %d images, %d bytes\n", h.Revision, path, h.Records, h.Images, size)
			if len(h.SecretKeyIDs) > 0 {
				fmt.Fprintf(a.stdout, "its secrets need key %s: keep the secrets key file apart from it\n", strings.Join(h.SecretKeyIDs, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&withImages, "with-images", false, "also save every image's archive")
	return cmd
}

func (a *app) restoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Load a backup file into an empty cluster (admin only)",
		Long: `Load a backup made by 'ebb backup' into a cluster that holds no functions,
namespaces, secrets, tokens or images yet, on either store. The file is
checked from end to end first, here and again by the control plane: a
corrupt, truncated or foreign file, or one from a newer ebb, is refused and
the cluster left untouched. So is a backup whose secrets are sealed under a
key the cluster lacks: start ebbd with the old cluster's secrets key file
first. Everything is written in one store transaction; functions start from
zero on their first request.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := backup.Read(f, backup.Options{DiscardImages: true}); err != nil {
				return fmt.Errorf("%s: %w; nothing was restored", args[0], err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.Restore(cmd.Context(), f)
			if err != nil {
				return fmt.Errorf("restore %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(res)
			}
			fmt.Fprintf(a.stdout, "restored the backup of store revision %d taken %s: %d records, %d images\n",
				res.BackupRevision, res.BackupCreatedAt.UTC().Format("2006-01-02 15:04:05 MST"), res.Records, res.Images)
			return nil
		},
	}
}
