package nodeagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store"
)

// ErrPull means an image could not be pulled: the registry refused it
// (401, 404) or could not be reached. The revision is Failed with the
// registry's message and retried with backoff, as a registry may be fixed.
var ErrPull = errors.New("pull failed")

// image returns the config of ref on this node, pulling it first when the
// node lacks it: an uploaded image from the control plane's registry, any
// other from the registry its reference names, with the credentials of
// secret pullSecret in namespace ns. Concurrent calls for one image share
// one pull, and a pull holds no lock of the agent's, so that replicas of
// other revisions start meanwhile.
func (a *Agent) image(ctx context.Context, ref, ns, pullSecret string) (ImageConfig, error) {
	img, err := a.deps.Runtime.Image(ctx, ref)
	if !errors.Is(err, ErrNotFound) {
		return img, err
	}
	name, nerr := ociimage.NormalizeName(ref)
	if nerr != nil {
		return ImageConfig{}, fmt.Errorf("%w: %v", ErrBadImage, nerr)
	}
	src, ok, err := a.pullSource(ctx, name, ns, pullSecret)
	if err != nil {
		return ImageConfig{}, err
	}
	if !ok {
		return ImageConfig{}, fmt.Errorf("%w: image %s is not on node %s", ErrBadImage, ref, a.cfg.Node)
	}
	// The pull runs under the agent's context, not the first caller's: a
	// caller that gives up must not fail the others waiting on it.
	ch := a.pulls.DoChan(a.cfg.Node+"/"+name, func() (any, error) {
		pctx, cancel := context.WithTimeout(a.runCtx(), a.cfg.PullTimeout)
		defer cancel()
		start := time.Now()
		err := a.deps.Runtime.Pull(pctx, name, src)
		a.met.pulls.WithLabelValues(pullResult(err)).Observe(time.Since(start).Seconds())
		if err != nil {
			a.log.Warn("image pull failed", "image", name, "registry", cmpRegistry(src, name), "err", err)
			return nil, err
		}
		a.log.Info("pulled image", "image", name, "registry", cmpRegistry(src, name), "took", time.Since(start))
		return nil, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return ImageConfig{}, fmt.Errorf("%w: %v", ErrPull, res.Err)
		}
	case <-ctx.Done():
		return ImageConfig{}, ctx.Err()
	}
	img, err = a.deps.Runtime.Image(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return ImageConfig{}, fmt.Errorf("%w: image %s is not on node %s after its pull", ErrBadImage, ref, a.cfg.Node)
	}
	return img, err
}

// imageError is what a revision or job pod reports for an image it cannot
// have: the agent's own messages as they are (they name the image),
// anything else with the image's name.
func imageError(ref string, err error) error {
	if errors.Is(err, ErrBadImage) || errors.Is(err, ErrPull) {
		return err
	}
	return fmt.Errorf("image %s: %w", ref, err)
}

// runCtx is Run's context, or a background one before Run (in tests that
// drive the agent's parts directly).
func (a *Agent) runCtx() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx != nil {
		return a.ctx
	}
	return context.Background()
}

func pullResult(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func cmpRegistry(src PullSource, name string) string {
	if src.Mirror != "" {
		return src.Mirror
	}
	r, _ := ociimage.Registry(name)
	return r
}

// pullSource says where name is pulled from, or false if nowhere: an
// image uploaded to the control plane (its record exists) comes from the
// control plane's registry when this node has one; any other image comes
// from its own registry. The control plane accepts a name of neither kind
// only when the user's reference named its registry, so an unqualified
// name is never pulled from Docker Hub by surprise.
func (a *Agent) pullSource(ctx context.Context, name, ns, pullSecret string) (PullSource, bool, error) {
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	rec, _, err := store.GetJSON[store.Image](sctx, a.deps.Store, store.ImageKey(name))
	cancel()
	switch {
	case err == nil:
		src := a.cfg.UploadRegistry
		if src.Mirror != "" && rec.Registry != "" {
			src.Mirror = rec.Registry // the control plane that holds it
		}
		return src, src.Mirror != "", nil
	case !errors.Is(err, store.ErrNotFound):
		return PullSource{}, false, fmt.Errorf("read image record %s: %w", name, err)
	}
	registry, err := ociimage.Registry(name)
	if err != nil {
		return PullSource{}, false, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	if registry == dockerHub && !a.cfg.DockerHubPulls {
		return PullSource{}, false, nil
	}
	src := PullSource{PlainHTTP: slices.Contains(a.cfg.InsecureRegistries, registry)}
	if pullSecret == "" {
		return src, true, nil
	}
	data, err := a.readSecrets(ctx, ns, []api.Secret{{Secret: pullSecret}})
	if err != nil {
		return PullSource{}, false, err
	}
	src.Username, src.Password, err = RegistryCredentials(data[pullSecret], registry)
	if err != nil {
		return PullSource{}, false, fmt.Errorf("%w: image pull secret %s/%s: %v", ErrBadImage, ns, pullSecret, err)
	}
	return src, true, nil
}

// dockerHub is Docker Hub's registry as references name it.
const dockerHub = "docker.io"

// dockerConfigKey is the key of a kubernetes.io/dockerconfigjson secret.
const dockerConfigKey = ".dockerconfigjson"

// RegistryCredentials picks registry's credentials out of an image pull
// secret's data: a ".dockerconfigjson" key ({"auths": {"host:port":
// {"username", "password"} or {"auth": base64("user:pass")}}}, as
// Kubernetes and docker login write it), or "username" and "password"
// keys, which hold for any registry.
func RegistryCredentials(data map[string][]byte, registry string) (user, pass string, err error) {
	raw, ok := data[dockerConfigKey]
	if !ok {
		user, pass = string(data["username"]), string(data["password"])
		if user == "" && pass == "" {
			return "", "", errors.New(`it has neither a ".dockerconfigjson" key nor "username" and "password" keys`)
		}
		return user, pass, nil
	}
	var cfg struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
			Auth     string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", "", fmt.Errorf("%s is not a docker config: %v", dockerConfigKey, err)
	}
	for host, e := range cfg.Auths {
		if authHost(host) != registry {
			continue
		}
		if e.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return "", "", fmt.Errorf("the auth of %s is not base64", host)
			}
			u, p, ok := strings.Cut(string(dec), ":")
			if !ok {
				return "", "", fmt.Errorf("the auth of %s is not user:password", host)
			}
			return u, p, nil
		}
		return e.Username, e.Password, nil
	}
	return "", "", fmt.Errorf("%s has no credentials for registry %s", dockerConfigKey, registry)
}

// authHost is the registry host a docker config's auths key names: keys
// may be URLs ("https://host/v1/"), and Docker Hub's is its index's.
func authHost(key string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return dockerHub
	}
	return h
}
