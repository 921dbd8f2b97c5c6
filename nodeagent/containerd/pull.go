package containerd

import (
	"context"
	"fmt"
	"net/http"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"

	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/nodeagent"
)

// registryTimeout bounds one exchange with a registry (a manifest, or the
// headers of a blob), so that a registry that accepts connections and
// never answers fails the pull rather than holding it forever.
const registryTimeout = 30 * time.Second

// Pull implements nodeagent.Runtime: it fetches ref through containerd's
// resolver for the registry the reference (or src.Mirror) names, unpacks
// it for the snapshotter, and names it as Image finds it.
func (r *Runtime) Pull(ctx context.Context, ref string, src nodeagent.PullSource) error {
	name, err := ociimage.NormalizeName(ref)
	if err != nil {
		return fmt.Errorf("%w: %v", nodeagent.ErrBadImage, err)
	}
	_, err = r.client.Pull(r.ns(ctx), name,
		containerd.WithResolver(Resolver(src)),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.cfg.Snapshotter))
	if err != nil {
		return fmt.Errorf("pull %s: %w", name, err)
	}
	return nil
}

// Resolver is containerd's docker resolver for src: the registry a
// reference names, or src.Mirror for every reference.
func Resolver(src nodeagent.PullSource) remotes.Resolver {
	client := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ResponseHeaderTimeout: registryTimeout,
		TLSHandshakeTimeout:   registryTimeout,
		MaxIdleConnsPerHost:   8,
	}}
	return docker.NewResolver(docker.ResolverOptions{Hosts: func(domain string) ([]docker.RegistryHost, error) {
		h := docker.RegistryHost{
			Client:       client,
			Host:         domain,
			Scheme:       "https",
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		}
		if domain == "docker.io" {
			h.Host = "registry-1.docker.io" // as containerd's default
		}
		if src.Mirror != "" {
			// The mirror keeps every registry's images apart under the
			// registry's name.
			h.Host, h.Path = src.Mirror, "/v2/"+domain
		}
		if src.PlainHTTP {
			h.Scheme = "http"
		}
		switch {
		case src.Bearer != "":
			h.Header = http.Header{"Authorization": {"Bearer " + src.Bearer}}
		case src.Username != "" || src.Password != "":
			user, pass := src.Username, src.Password
			h.Authorizer = docker.NewDockerAuthorizer(docker.WithAuthClient(client),
				docker.WithAuthCreds(func(string) (string, string, error) { return user, pass, nil }))
		default:
			// Anonymous, with the token exchange public registries need.
			h.Authorizer = docker.NewDockerAuthorizer(docker.WithAuthClient(client))
		}
		return []docker.RegistryHost{h}, nil
	}})
}
