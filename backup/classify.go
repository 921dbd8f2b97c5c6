package backup

import (
	"strings"

	"github.com/ebbrun/ebb/internal/leader"
	"github.com/ebbrun/ebb/store"
)

// Class says whether a store prefix is backed up.
type Class int

const (
	// Unclassified is a key under no prefix of Prefixes: left out, and
	// counted in the header's Skipped["other"].
	Unclassified Class = iota
	// Kept is desired state: what users and operators wrote. It is backed
	// up and restored.
	Kept
	// Runtime is state the cluster rebuilds (placement, liveness, process
	// credentials, run history): never backed up, since on a restored
	// cluster it would describe processes and nodes that are not there.
	Runtime
)

// Prefix is one store prefix and why it is, or is not, backed up.
type Prefix struct {
	Prefix string
	Class  Class
	Why    string
}

// Prefixes is the one list of what a backup holds. Every prefix of
// store/records.go must be here (TestEveryStorePrefixIsClassified); a new
// one is left out of backups until someone decides.
var Prefixes = []Prefix{
	{store.PrefixNamespaces, Kept, "namespaces and their quotas"},
	{store.PrefixFunctions, Kept, "functions: spec, latest revision and traffic"},
	{store.PrefixRevisions, Kept, "revisions: the immutable specs traffic points at"},
	{store.PrefixRollouts, Kept, "rollouts in progress and their history; a restored runner resumes them"},
	{store.PrefixCronTriggers, Kept, "cron triggers with their cursor, so runs already handled are not fired again"},
	{store.PrefixJobs, Kept, "jobs: spec and status; unfinished ones are placed again by the job controller"},
	{store.PrefixSecrets, Kept, "secrets, sealed: copied as stored and never opened"},
	{store.PrefixTokens, Kept, "API tokens: ids, roles and secret hashes only"},
	{store.PrefixImages, Kept, "image references; the archives only with images"},
	{store.PrefixDomains, Kept, "custom domain mappings; certificates are issued again (ACME) or live in files"},

	{store.PrefixScales, Runtime, "autoscaler decisions; functions start from zero"},
	{store.PrefixKeepAlive, Runtime, "keep-alive history; relearned from traffic"},
	{store.PrefixAssignments, Runtime, "placement on nodes that may not exist"},
	{store.PrefixEndpoints, Runtime, "ready replicas of the old cluster"},
	{store.PrefixReplicas, Runtime, "node agents' containers"},
	{store.PrefixPorts, Runtime, "node agents' port claims"},
	{store.PrefixRevStatus, Runtime, "per-node revision status"},
	{store.PrefixNodes, Runtime, "node heartbeats"},
	{store.PrefixVIPs, Runtime, "VIPs, allocated again by the nodes"},
	{store.PrefixVIPSlots, Runtime, "VIP slot claims, with the VIPs"},
	{store.PrefixNodeCreds, Runtime, "each process registers its own credential at start"},
	{store.PrefixCronRuns, Runtime, "run history; the triggers' cursors keep what matters"},
	{store.PrefixJobPods, Runtime, "job attempts on nodes"},
	{store.PrefixJobPodStatus, Runtime, "node agents' reports on job attempts"},
	{store.PrefixRouters, Runtime, "routers' access-log addresses, written by each router at start"},
	{leader.RecordKey(""), Runtime, "the leading control plane's record; a restored cluster elects its own"},
}

// Classify returns the class of a store key and the prefix that decided it
// ("" when Unclassified).
func Classify(key string) (Class, string) {
	for _, p := range Prefixes {
		if strings.HasPrefix(key, p.Prefix) {
			return p.Class, p.Prefix
		}
	}
	return Unclassified, ""
}

// KeptPrefixes are the prefixes a backup holds, in Prefixes' order.
func KeptPrefixes() []string {
	var out []string
	for _, p := range Prefixes {
		if p.Class == Kept {
			out = append(out, p.Prefix)
		}
	}
	return out
}
