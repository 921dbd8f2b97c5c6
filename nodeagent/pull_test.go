package nodeagent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/nodeagent/fake"
	"github.com/ebbrun/ebb/store"
)

const remoteImage = "registry.test:5000/team/hello:v1"

func TestPullIsSharedAndBlocksNoOtherStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		e.rt.AddRemoteImage(nodeagent.ImageConfig{Ref: remoteImage, Entrypoint: []string{"/hello"}}, fake.Behavior{})
		release := e.rt.HoldPulls()
		a := e.deploy("a", 1, api.FunctionSpec{Image: remoteImage})
		b := e.deploy("b", 1, api.FunctionSpec{Image: remoteImage})
		local := e.deploy("local", 1, api.FunctionSpec{Image: image})
		e.assign("a", a, 2, 0)
		e.assign("b", b, 1, 0)
		e.assign("local", local, 1, 0)
		// The pull is held: a revision of an image the node holds starts
		// meanwhile.
		e.waitEndpoints(local, 1)
		synctest.Wait()
		require.Len(t, e.rt.Pulls(), 1, "two revisions of one image wait on one pull")
		assert.Empty(t, e.endpoints(a))
		release()
		e.waitEndpoints(a, 2)
		e.waitEndpoints(b, 1)
		pulls := e.rt.Pulls()
		require.Len(t, pulls, 1, "the image was pulled once")
		assert.Equal(t, remoteImage, pulls[0].Ref)
		assert.Equal(t, nodeagent.PullSource{}, pulls[0].Source, "anonymous, over HTTPS")
	})
}

func TestPullSource(t *testing.T) {
	uploaded := "docker.io/library/uploaded:v1"
	elsewhere := "docker.io/library/elsewhere:v1"
	tests := []struct {
		name  string
		image string
		// secret is the function's imagePullSecret.
		secret string
		tweak  func(*nodeagent.Config)
		want   nodeagent.PullSource
	}{
		{name: "credentials from a dockerconfigjson secret", image: remoteImage, secret: "regcred",
			want: nodeagent.PullSource{Username: "team", Password: "hunter2"}},
		{name: "a plain-HTTP registry", image: remoteImage,
			tweak: func(c *nodeagent.Config) { c.InsecureRegistries = []string{"other:5000", "registry.test:5000"} },
			want:  nodeagent.PullSource{PlainHTTP: true}},
		{name: "Docker Hub when its pulls are on", image: "docker.io/team/hello:v1",
			tweak: func(c *nodeagent.Config) { c.DockerHubPulls = true }},
		{name: "an uploaded image comes from the control plane", image: uploaded,
			tweak: func(c *nodeagent.Config) {
				c.UploadRegistry = nodeagent.PullSource{Mirror: "10.0.0.1:8090", PlainHTTP: true, Bearer: "cred"}
			},
			want: nodeagent.PullSource{Mirror: "10.0.0.1:8090", PlainHTTP: true, Bearer: "cred"}},
		{name: "an uploaded image comes from the control plane its record names", image: elsewhere,
			tweak: func(c *nodeagent.Config) {
				c.UploadRegistry = nodeagent.PullSource{Mirror: "10.0.0.1:8090", PlainHTTP: true, Bearer: "cred"}
			},
			want: nodeagent.PullSource{Mirror: "10.0.0.2:8090", PlainHTTP: true, Bearer: "cred"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, tt.tweak)
				e.rt.AddRemoteImage(nodeagent.ImageConfig{Ref: tt.image, Entrypoint: []string{"/hello"}}, fake.Behavior{})
				e.recordUpload(uploaded, "")
				e.recordUpload(elsewhere, "10.0.0.2:8090")
				rev := e.deploy("fn", 1, api.FunctionSpec{Image: tt.image, ImagePullSecret: tt.secret})
				e.assign("fn", rev, 1, 0)
				e.waitEndpoints(rev, 1)
				pulls := e.rt.Pulls()
				require.Len(t, pulls, 1)
				assert.Equal(t, tt.want, pulls[0].Source)
			})
		})
	}
}

func TestPullFailureFailsTheRevision(t *testing.T) {
	uploaded := "docker.io/library/uploaded:v1"
	tests := []struct {
		name    string
		image   string
		secret  string
		fail    error
		message string
	}{
		{name: "the registry refuses", image: remoteImage, secret: "regcred",
			fail:    errors.New("pull registry.test:5000/team/hello:v1: unexpected status from HEAD request to https://registry.test:5000/v2/team/hello/manifests/v1: 401 Unauthorized"),
			message: "pull registry.test:5000/team/hello:v1: unexpected status from HEAD request to https://registry.test:5000/v2/team/hello/manifests/v1: 401 Unauthorized"},
		{name: "the registry has no such tag", image: "registry.test:5000/team/hello:nope",
			message: "pull registry.test:5000/team/hello:nope: registry.test:5000/team/hello:nope: not found"},
		{name: "the pull secret has no credentials for the registry", image: "other.test/team/hello:v1", secret: "regcred",
			message: "image pull secret default/regcred: .dockerconfigjson has no credentials for registry other.test"},
		{name: "the pull secret does not exist", image: remoteImage, secret: "gone",
			message: "image registry.test:5000/team/hello:v1: read secret default/gone: secret default/gone: not found"},
		{name: "an upload on a node with no control plane registry", image: uploaded,
			message: "image docker.io/library/uploaded:v1 is not on node node-a"},
		{name: "a docker.io image with Docker Hub pulls off", image: "docker.io/team/hello:v1",
			message: "image docker.io/team/hello:v1 is not on node node-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, nil)
				e.rt.AddRemoteImage(nodeagent.ImageConfig{Ref: remoteImage, Entrypoint: []string{"/hello"}}, fake.Behavior{})
				e.recordUpload(uploaded, "10.0.0.2:8090")
				if tt.fail != nil {
					e.rt.FailNext("Pull", tt.fail)
				}
				rev := e.deploy("fn", 1, api.FunctionSpec{Image: tt.image, ImagePullSecret: tt.secret})
				e.assign("fn", rev, 1, 0)
				st := e.waitStatus(rev, "failed", func(s store.RevisionNodeStatus) bool { return s.State == api.RevisionFailed })
				assert.Equal(t, tt.message, st.Message)
				assert.Empty(t, e.rt.Containers())
				if strings.Contains(tt.message, "is not on node") {
					assert.Empty(t, e.rt.Pulls(), "nothing is pulled")
				}
				if tt.fail != nil {
					// The registry may be fixed: the pull is retried after
					// the backoff, and the revision serves.
					e.waitEndpoints(rev, 1)
					assert.Len(t, e.rt.Pulls(), 2)
				}
			})
		})
	}
}

func TestRegistryCredentials(t *testing.T) {
	tests := []struct {
		name       string
		data       map[string][]byte
		registry   string
		user, pass string
		err        string
	}{
		{name: "username and password keys", data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}, registry: "any", user: "u", pass: "p"},
		{name: "auth", data: dockerConfig(`{"auths":{"r:5000":{"auth":"dTpwOnE="}}}`), registry: "r:5000", user: "u", pass: "p:q"},
		{name: "username and password", data: dockerConfig(`{"auths":{"https://r:5000/v1/":{"username":"u","password":"p"}}}`), registry: "r:5000", user: "u", pass: "p"},
		{name: "docker hub's index", data: dockerConfig(`{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}`), registry: "docker.io", user: "u", pass: "p"},
		{name: "another registry's", data: dockerConfig(`{"auths":{"r:5000":{"auth":"dTpw"}}}`), registry: "s:5000", err: "no credentials for registry s:5000"},
		{name: "not json", data: dockerConfig(`{`), registry: "r", err: "is not a docker config"},
		{name: "auth not base64", data: dockerConfig(`{"auths":{"r":{"auth":"%%%"}}}`), registry: "r", err: "not base64"},
		{name: "auth without a colon", data: dockerConfig(`{"auths":{"r":{"auth":"dXNlcg=="}}}`), registry: "r", err: "not user:password"},
		{name: "no known key", data: map[string][]byte{"token": []byte("t")}, registry: "r", err: "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, pass, err := nodeagent.RegistryCredentials(tt.data, tt.registry)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.user, user)
			assert.Equal(t, tt.pass, pass)
		})
	}
}

func dockerConfig(s string) map[string][]byte {
	return map[string][]byte{".dockerconfigjson": []byte(s)}
}

// recordUpload records name as an image uploaded to the control plane
// whose /v2/ is at registry ("": the node's own).
func (e *env) recordUpload(name, registry string) {
	e.t.Helper()
	_, err := e.store.Txn(context.Background(), store.PutJSON(store.ImageKey(name),
		store.Image{Name: name, CreatedAt: time.Now(), Registry: registry}, store.AnyVersion))
	require.NoError(e.t, err)
}
