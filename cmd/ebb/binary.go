package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// binaryImage checks that the file at path is a static Linux executable and
// returns what ociimage.Build needs to package it as a function's image.
//
// The image tag is derived from the binary's content, so a rebuilt binary
// gets a new image name and therefore a new revision, while the same binary
// deploys as a no-op.
func binaryImage(function, path string) (ociimage.BuildOptions, error) {
	opts, err := readBinary(path)
	if err != nil {
		return ociimage.BuildOptions{}, err
	}
	sum := sha256.Sum256(opts.Binary)
	opts.Name = function + ":bin-" + hex.EncodeToString(sum[:])[:16]
	return opts, nil
}

// readBinary reads a static executable into build options, without a name.
func readBinary(path string) (ociimage.BuildOptions, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ociimage.BuildOptions{}, &usageError{err: fmt.Errorf("binary: %w", err)}
	}
	arch, err := staticELFArch(data)
	if err != nil {
		return ociimage.BuildOptions{}, usagef("binary %s: %v", path, err)
	}
	return ociimage.BuildOptions{
		Binary:       data,
		BinaryPath:   "/app/" + filepath.Base(path),
		Architecture: arch,
	}, nil
}

// staticELFArch returns the GOARCH of a static Linux ELF executable. A
// dynamically linked one would fail to start in an image that holds nothing
// but the binary, so it is refused here with the fix.
func staticELFArch(data []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %v", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("not an executable (ELF type %s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("is dynamically linked; build it static, for Go with CGO_ENABLED=0")
		}
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return "", fmt.Errorf("is built for %s, not Linux", f.OSABI)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("unsupported machine %s", f.Machine)
}

// errUploadEnded stops Build when the upload has stopped reading.
var errUploadEnded = errors.New("upload ended")

// pushBinary packages a static binary into an OCI image and streams it to
// the API as it is written: Build writes into a pipe that PushImage reads.
func (a *app) pushBinary(ctx context.Context, c *api.Client, path string, opts ociimage.BuildOptions) (api.Image, error) {
	fmt.Fprintf(a.stderr, "Packaging %s (%s) as image %s\n", path, bytesIEC(int64(len(opts.Binary))), opts.Name)
	pr, pw := io.Pipe()
	built := make(chan error, 1)
	go func() {
		_, err := ociimage.Build(pw, opts)
		pw.CloseWithError(err) // nil closes cleanly, so the upload ends
		built <- err
	}()
	img, err := c.PushImage(ctx, pr)
	// Unblocks Build if the upload stopped reading early.
	pr.CloseWithError(errUploadEnded)
	buildErr := <-built
	if buildErr != nil && !errors.Is(buildErr, errUploadEnded) {
		return api.Image{}, fmt.Errorf("package %s: %w", path, buildErr)
	}
	if err != nil {
		return api.Image{}, fmt.Errorf("push image %s: %w", opts.Name, err)
	}
	fmt.Fprintf(a.stderr, "Pushed %s (%s)\n", img.Name, shortDigest(img.Digest))
	return img, nil
}
