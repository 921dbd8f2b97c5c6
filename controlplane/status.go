package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/revhealth"
	"github.com/ebbrun/ebb/store"
)

// snapshot is everything status needs, read from the store.
type snapshot struct {
	functions []store.Versioned[store.Function]
	revisions map[string][]store.Revision // by function
	scales    map[string]store.Scale      // by revision
	ready     map[string][]store.Endpoint // ready endpoints by revision
	nodeState map[string][]store.RevisionNodeStatus
	vips      map[string]string // VIP address by function
}

func newSnapshot() *snapshot {
	return &snapshot{
		revisions: map[string][]store.Revision{},
		scales:    map[string]store.Scale{},
		ready:     map[string][]store.Endpoint{},
		nodeState: map[string][]store.RevisionNodeStatus{},
		vips:      map[string]string{},
	}
}

// readSnapshot reads the state of every function with one List per prefix,
// so listing 10,000 functions costs six range reads, not 60,000 gets.
func (s *Server) readSnapshot(ctx context.Context) (*snapshot, error) {
	snap := newSnapshot()
	var err error
	if snap.functions, _, err = store.ListJSON[store.Function](ctx, s.deps.Store, store.PrefixFunctions); err != nil {
		return nil, err
	}
	revs, _, err := store.ListJSON[store.Revision](ctx, s.deps.Store, store.PrefixRevisions)
	if err != nil {
		return nil, err
	}
	for _, r := range revs {
		snap.revisions[r.Value.Function] = append(snap.revisions[r.Value.Function], r.Value)
	}
	scales, _, err := store.ListJSON[store.Scale](ctx, s.deps.Store, store.PrefixScales)
	if err != nil {
		return nil, err
	}
	for _, sc := range scales {
		snap.scales[sc.Value.Revision] = sc.Value
	}
	if err := s.readObserved(ctx, snap, store.PrefixEndpoints, store.PrefixRevStatus); err != nil {
		return nil, err
	}
	vips, _, err := store.ListJSON[store.VIP](ctx, s.deps.Store, store.PrefixVIPs)
	if err != nil {
		return nil, err
	}
	for _, v := range vips {
		snap.vips[v.Value.Function] = v.Value.Addr
	}
	return snap, nil
}

// readObserved fills ready counts and node states from the given prefixes:
// the whole tree for a listing, one revision's keys for a get.
func (s *Server) readObserved(ctx context.Context, snap *snapshot, endpointPrefix, statusPrefix string) error {
	endpoints, _, err := store.ListJSON[store.Endpoint](ctx, s.deps.Store, endpointPrefix)
	if err != nil {
		return err
	}
	for _, ep := range endpoints {
		snap.ready[ep.Value.Revision] = append(snap.ready[ep.Value.Revision], ep.Value)
	}
	states, _, err := store.ListJSON[store.RevisionNodeStatus](ctx, s.deps.Store, statusPrefix)
	if err != nil {
		return err
	}
	for _, st := range states {
		snap.nodeState[st.Value.Revision] = append(snap.nodeState[st.Value.Revision], st.Value)
	}
	return nil
}

// functionStatus reads one function and the observed state of its revisions.
func (s *Server) functionStatus(ctx context.Context, name string) (api.Function, error) {
	fn, version, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(name))
	if err != nil {
		return api.Function{}, functionErr(name, err)
	}
	return s.statusOf(ctx, fn, version, nil)
}

// statusOf joins a function record at version with the observed state of
// its revisions, plus pending: a revision not yet written (a dry run's).
func (s *Server) statusOf(ctx context.Context, fn store.Function, version int64, pending *store.Revision) (api.Function, error) {
	name := fn.Name
	snap := newSnapshot()
	snap.functions = []store.Versioned[store.Function]{{Key: store.FunctionKey(name), Value: fn, Version: version}}
	revs, _, err := store.ListJSON[store.Revision](ctx, s.deps.Store, store.RevisionsPrefix(name))
	if err != nil {
		return api.Function{}, err
	}
	for _, r := range revs {
		snap.revisions[name] = append(snap.revisions[name], r.Value)
		sc, _, err := store.GetJSON[store.Scale](ctx, s.deps.Store, store.ScaleKey(r.Value.Name))
		switch {
		case err == nil:
			snap.scales[r.Value.Name] = sc
		case !errors.Is(err, store.ErrNotFound):
			return api.Function{}, err
		}
		if err := s.readObserved(ctx, snap, store.EndpointsPrefix(r.Value.Name), store.RevStatusPrefix(r.Value.Name)); err != nil {
			return api.Function{}, err
		}
	}
	if pending != nil {
		snap.revisions[name] = append(snap.revisions[name], *pending)
	}
	vip, _, err := store.GetJSON[store.VIP](ctx, s.deps.Store, store.VIPKey(name))
	switch {
	case err == nil:
		snap.vips[name] = vip.Addr
	case !errors.Is(err, store.ErrNotFound):
		return api.Function{}, err
	}
	return s.buildStatus(fn, version, snap), nil
}

// buildStatus joins a function with the observed state of its revisions.
// version is the record's store version, its resourceVersion (0 for a
// record not written yet).
func (s *Server) buildStatus(fn store.Function, version int64, snap *snapshot) api.Function {
	ns, name := api.SplitQualifiedName(fn.Name)
	out := api.Function{
		Name:            name,
		Namespace:       ns,
		Spec:            redact(fn.Spec),
		Labels:          fn.Spec.Labels,
		ResourceVersion: resourceVersion(version),
		URL:             s.url(fn.Name),
		VIP:             snap.vips[fn.Name],
		LatestRevision:  fn.LatestRevision,
		CreatedAt:       fn.CreatedAt,
		UpdatedAt:       fn.UpdatedAt,
	}
	percent := map[string]int{}
	tags := map[string][]string{}
	for _, t := range store.ResolveTraffic(fn) {
		percent[t.Revision] += t.Percent
		if t.Tag != "" {
			t.URL = s.url(t.Tag + "-" + fn.Name)
			tags[t.Revision] = append(tags[t.Revision], t.Tag)
		}
		out.Traffic = append(out.Traffic, t)
	}
	revs := snap.revisions[fn.Name]
	sort.Slice(revs, func(i, j int) bool { return revs[i].Generation > revs[j].Generation })
	for _, rev := range revs {
		out.Revisions = append(out.Revisions, revisionStatus(rev, snap, percent[rev.Name], tags[rev.Name]))
	}
	return out
}

// revisionStatus sums what every node reports about a revision and names
// its state: the health verdict's when the revision has failed, else where
// its scaling stands.
func revisionStatus(rev store.Revision, snap *snapshot, percent int, tags []string) api.RevisionStatus {
	st := api.RevisionStatus{
		Name:       rev.Name,
		Generation: rev.Generation,
		Image:      rev.Spec.Image,
		CreatedAt:  rev.CreatedAt,
		Percent:    percent,
		Tags:       tags,
		Desired:    snap.scales[rev.Name].Desired,
		Ready:      len(snap.ready[rev.Name]),
	}
	for _, ep := range snap.ready[rev.Name] {
		st.Replicas = append(st.Replicas, api.ReplicaStatus{Name: ep.Replica, Node: ep.Node, Addr: ep.Addr})
	}
	for _, ns := range snap.nodeState[rev.Name] {
		st.PreCreated += ns.PreCreated
		st.Restarts += ns.Restarts
		if ns.LastExitCode != nil {
			st.LastExitCode = ns.LastExitCode
		}
		if len(ns.LastLogLines) > 0 {
			st.LastLogLines = ns.LastLogLines
		}
	}
	// The activator fails requests fast by the same verdict.
	health := revhealth.Judge(snap.nodeState[rev.Name])
	switch {
	case health.Failed:
		st.State = health.Reason
	case st.Desired == 0 && st.Ready == 0:
		st.State = api.RevisionIdle
	case st.Ready == st.Desired:
		st.State = api.RevisionReady
	default:
		st.State = api.RevisionScaling
	}
	// Set even while the revision serves: it says why a node has no replica.
	st.Message = health.Message
	// And why it runs fewer replicas than its demand, when its namespace's
	// quota clipped it.
	if sc := snap.scales[rev.Name]; sc.Clipped != "" {
		clipped := fmt.Sprintf("%s; demand %d replicas, runs %d", sc.Clipped, sc.Wanted, sc.Desired)
		st.Message = strings.TrimPrefix(st.Message+"; "+clipped, "; ")
	}
	return st
}

func (s *Server) url(host string) string {
	if s.cfg.RouterPort == 80 {
		return fmt.Sprintf("http://%s.%s/", host, s.cfg.Domain)
	}
	return fmt.Sprintf("http://%s.%s:%d/", host, s.cfg.Domain, s.cfg.RouterPort)
}

// redact removes secret values from a spec before it leaves the server.
func redact(spec api.FunctionSpec) api.FunctionSpec {
	if len(spec.Secrets) == 0 {
		return spec
	}
	secrets := make([]api.Secret, len(spec.Secrets))
	for i, sec := range spec.Secrets {
		sec.Value = ""
		secrets[i] = sec
	}
	spec.Secrets = secrets
	return spec
}
