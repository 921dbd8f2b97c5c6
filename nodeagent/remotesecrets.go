package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ebbrun/ebb/api"
)

// RemoteSecrets reads secret values from the control plane's internal
// endpoint (controlplane.InternalSecretsPath), for node agents that do not
// run in the control plane's process. Values are held in memory only.
type RemoteSecrets struct {
	// BaseURL is the control plane's API URL, such as http://10.0.0.1:8090.
	BaseURL string
	// Token is this node agent's node credential, which the endpoint
	// requires and which names the node to the control plane's audit.
	Token  string
	Client *http.Client
}

var _ SecretReader = (*RemoteSecrets)(nil)

// internalSecretsPath is controlplane.InternalSecretsPath; the node agent
// does not import the control plane.
const internalSecretsPath = "/internal/v1/secrets/"

// SecretValues implements SecretReader.
func (r *RemoteSecrets) SecretValues(ctx context.Context, ns, name string) (map[string][]byte, error) {
	u := strings.TrimRight(r.BaseURL, "/") + internalSecretsPath + url.PathEscape(ns) + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := r.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4*api.MaxSecretBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("control plane: %s", e.Error.Message)
		}
		return nil, fmt.Errorf("control plane answered %s", resp.Status)
	}
	var data api.SecretData
	if err := json.Unmarshal(body, &data); err != nil {
		return nil, fmt.Errorf("decode secret: %w", err)
	}
	return data.Data, nil
}
