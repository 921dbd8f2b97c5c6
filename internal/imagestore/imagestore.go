package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/images/archive"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// Defaults for Config fields left zero.
const (
	DefaultNamespace       = "ebb"
	DefaultSnapshotter     = "overlayfs"
	DefaultLeaseExpiration = time.Hour
)

// ErrNotFound is returned for an image name containerd does not have.
var ErrNotFound = errors.New("image not found")

// Config says where images live in containerd.
type Config struct {
	// Namespace is the containerd namespace. Default "ebb".
	Namespace string
	// Snapshotter images are unpacked for. Default "overlayfs".
	Snapshotter string
	// LeaseExpiration bounds how long the content of an import that died
	// midway (say, ebbd was killed) stays protected before containerd's
	// garbage collector may remove it. Default 1h.
	LeaseExpiration time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Snapshotter == "" {
		c.Snapshotter = DefaultSnapshotter
	}
	if c.LeaseExpiration == 0 {
		c.LeaseExpiration = DefaultLeaseExpiration
	}
	return c
}

// Validate reports the first problem with a defaulted Config.
func (c Config) Validate() error {
	if c.LeaseExpiration < 0 {
		return errors.New("image lease expiration must not be negative")
	}
	return nil
}

// Importer imports, lists and deletes images in one containerd namespace.
type Importer struct {
	client   *containerd.Client
	cfg      Config
	platform platforms.MatchComparer

	// mu serializes imports and deletes so that a rollback never races
	// another change to the same names from this process.
	mu sync.Mutex
}

// New returns an Importer using client, which the caller keeps and closes.
func New(client *containerd.Client, cfg Config) (*Importer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Importer{client: client, cfg: cfg, platform: platforms.Default()}, nil
}

func (i *Importer) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, i.cfg.Namespace)
}

// Import imports the archive at archivePath (an uncompressed OCI layout or
// docker save tar, as ociimage.Spool leaves it), unpacks it for the
// snapshotter, and names it as the archive does. When the archive names
// several images they are all imported; the first is returned. Either every
// name is created or updated and unpacked, or nothing changes.
func (i *Importer) Import(ctx context.Context, archivePath string) (img api.Image, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	ctx = i.ns(ctx)

	ls := i.client.LeasesService()
	lease, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(i.cfg.LeaseExpiration),
		leases.WithLabels(map[string]string{"ebb.io/purpose": "image-import"}))
	if err != nil {
		return api.Image{}, fmt.Errorf("import image: create lease: %w", err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	defer func() {
		// On success the image records now reference what they need; on
		// failure nothing references what the import wrote. Either way a
		// synchronous delete runs the garbage collector before Import
		// returns, so leftovers (the archive's own index.json, or a whole
		// failed import) are gone at once rather than at some later GC.
		// The context must outlive a cancelled caller.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := ls.Delete(dctx, lease, leases.SynchronousDelete); derr != nil && err == nil {
			err = fmt.Errorf("import image: release lease: %w", derr)
		}
	}()

	targets, err := i.ingest(lctx, archivePath)
	if err != nil {
		return api.Image{}, err
	}
	unpacked := map[digest.Digest]bool{}
	for _, t := range targets {
		if unpacked[t.Target.Digest] {
			continue
		}
		if err := i.unpack(lctx, t); err != nil {
			return api.Image{}, err
		}
		unpacked[t.Target.Digest] = true
	}
	if err := i.record(lctx, targets); err != nil {
		return api.Image{}, err
	}
	return i.describe(ctx, targets[0])
}

// ingest writes the archive's blobs into the content store and returns the
// images it names, with garbage-collection labels set from each target down
// to its layers for this platform.
func (i *Importer) ingest(ctx context.Context, archivePath string) ([]images.Image, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	defer f.Close()
	cs := i.client.ContentStore()
	idxDesc, err := archive.ImportIndex(ctx, cs, f)
	if err != nil {
		return nil, fmt.Errorf("import image: read archive: %w", err)
	}
	raw, err := content.ReadBlob(ctx, cs, idxDesc)
	if err != nil {
		return nil, fmt.Errorf("import image: read index: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("import image: parse index: %w", err)
	}
	// Names come from ociimage's rule, not containerd's, so that an
	// uploaded "hello:v1" is stored as docker.io/library/hello:v1 whatever
	// tool wrote the archive.
	var targets []images.Image
	seen := map[string]bool{}
	for _, m := range idx.Manifests {
		name, err := ociimage.ImageName(m.Annotations)
		if err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		targets = append(targets, images.Image{Name: name, Target: m})
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("import image: %w", &ociimage.ArchiveError{Msg: "the archive names no image"})
	}
	handler := images.SetChildrenLabels(cs, images.FilterPlatforms(images.ChildrenHandler(cs), i.platform))
	for _, t := range targets {
		if err := images.Walk(ctx, handler, t.Target); err != nil {
			return nil, fmt.Errorf("import image %s: %w", t.Name, err)
		}
	}
	return targets, nil
}

func (i *Importer) unpack(ctx context.Context, t images.Image) error {
	if err := i.checkPlatform(ctx, t); err != nil {
		return err
	}
	if err := containerd.NewImage(i.client, t).Unpack(ctx, i.cfg.Snapshotter); err != nil {
		return fmt.Errorf("import image %s: unpack: %w", t.Name, err)
	}
	return nil
}

// checkPlatform refuses an image that cannot run here. containerd checks
// the platform of an index's entries but not of a lone manifest, which it
// would unpack and then fail to exec ("exec format error") at first start.
func (i *Importer) checkPlatform(ctx context.Context, t images.Image) error {
	cs := i.client.ContentStore()
	m, err := images.Manifest(ctx, cs, t.Target, i.platform)
	if err != nil {
		return fmt.Errorf("import image %s: %w", t.Name,
			&ociimage.ArchiveError{Msg: "no variant for this node's platform " + platforms.DefaultString(), Err: err})
	}
	raw, err := content.ReadBlob(ctx, cs, m.Config)
	if err != nil {
		return fmt.Errorf("import image %s: read config: %w", t.Name, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("import image %s: parse config: %w", t.Name, err)
	}
	p := platforms.Normalize(ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
	if !i.platform.Match(p) {
		// Not malformed, but as useless here: the uploader's to fix.
		return fmt.Errorf("import image %s: %w", t.Name,
			&ociimage.ArchiveError{Msg: fmt.Sprintf("the image is for platform %s, this node runs %s", platforms.Format(p), platforms.DefaultString())})
	}
	return nil
}

// record creates or retargets every name, undoing its own changes if one fails.
func (i *Importer) record(ctx context.Context, targets []images.Image) error {
	is := i.client.ImageService()
	type undo struct {
		name    string
		created bool
		prev    images.Image
	}
	var done []undo
	rollback := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for k := len(done) - 1; k >= 0; k-- {
			if done[k].created {
				_ = is.Delete(rctx, done[k].name)
			} else {
				_, _ = is.Update(rctx, done[k].prev, "target")
			}
		}
	}
	for _, t := range targets {
		prev, err := is.Get(ctx, t.Name)
		switch {
		case errdefs.IsNotFound(err):
			if _, err := is.Create(ctx, t); err != nil {
				rollback()
				return fmt.Errorf("import image %s: create: %w", t.Name, err)
			}
			done = append(done, undo{name: t.Name, created: true})
		case err != nil:
			rollback()
			return fmt.Errorf("import image %s: %w", t.Name, err)
		default:
			if _, err := is.Update(ctx, t, "target"); err != nil {
				rollback()
				return fmt.Errorf("import image %s: update: %w", t.Name, err)
			}
			done = append(done, undo{name: t.Name, prev: prev})
		}
	}
	return nil
}

func (i *Importer) describe(ctx context.Context, img images.Image) (api.Image, error) {
	size, err := img.Size(ctx, i.client.ContentStore(), i.platform)
	if err != nil {
		return api.Image{}, fmt.Errorf("image %s: size: %w", img.Name, err)
	}
	return api.Image{Name: img.Name, Digest: img.Target.Digest.String(), Size: size}, nil
}

// Get describes one image. name is normalized first ("hello" finds
// docker.io/library/hello:latest).
func (i *Importer) Get(ctx context.Context, name string) (api.Image, error) {
	ctx = i.ns(ctx)
	img, err := i.get(ctx, name)
	if err != nil {
		return api.Image{}, err
	}
	return i.describe(ctx, img)
}

// Exists reports whether an image of that name is present.
func (i *Importer) Exists(ctx context.Context, name string) (bool, error) {
	_, err := i.get(i.ns(ctx), name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (i *Importer) get(ctx context.Context, name string) (images.Image, error) {
	n, err := ociimage.NormalizeName(name)
	if err != nil {
		return images.Image{}, err
	}
	img, err := i.client.ImageService().Get(ctx, n)
	if errdefs.IsNotFound(err) {
		return images.Image{}, fmt.Errorf("%w: %s", ErrNotFound, n)
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("get image %s: %w", n, err)
	}
	return img, nil
}

// List describes every image in the namespace, sorted by name.
func (i *Importer) List(ctx context.Context) ([]api.Image, error) {
	ctx = i.ns(ctx)
	imgs, err := i.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		d, err := i.describe(ctx, img)
		if err != nil {
			// An image whose content is gone still exists by name; show it.
			d = api.Image{Name: img.Name, Digest: img.Target.Digest.String()}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// Delete removes an image by name and collects its content and snapshots
// at once, unless another image or a container still uses them.
func (i *Importer) Delete(ctx context.Context, name string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	n, err := ociimage.NormalizeName(name)
	if err != nil {
		return err
	}
	err = i.client.ImageService().Delete(i.ns(ctx), n, images.SynchronousDelete())
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", ErrNotFound, n)
	}
	if err != nil {
		return fmt.Errorf("delete image %s: %w", n, err)
	}
	return nil
}
