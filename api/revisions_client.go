package api

import (
	"context"
	"net/http"
)

// DeleteRevision deletes revision rev of function name (ebb's name, such
// as hello-00002, or the revisionName its spec gave it) with what the
// autoscaler keeps for it. A revision that the traffic split names (by a
// percent, a tag or a match) or that is the latest is refused with 409
// (IsConflict); an unknown one is 404 (IsNotFound).
func (c *Client) DeleteRevision(ctx context.Context, name, rev string) error {
	if err := ValidateQualifiedName("revision", rev); err != nil {
		return err
	}
	path, err := c.functionPath(name, "/revisions/", rev)
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent, http.StatusOK)
	return err
}
