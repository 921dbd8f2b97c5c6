package placement

// Config weighs the score's plugins and sets the CPU overcommit of the
// filter. Scores are Kubernetes-style: each plugin scores a node 0..100
// and the node's score is their weighted sum.
type Config struct {
	// ImageLocalityWeight rewards a node that already has the image: a
	// missing image costs an import and unpack, seconds against the
	// milliseconds of a start.
	ImageLocalityWeight float64
	// PreCreatedWeight rewards a node holding a pre-created task of the
	// revision (Candidate.PreCreated).
	PreCreatedWeight float64
	// BalanceWeight rewards free capacity after placing (Kubernetes'
	// LeastAllocated: the mean of the free CPU and free memory fractions),
	// which spreads work and keeps headroom on every node.
	BalanceWeight float64
	// CPUOvercommit multiplies a node's cores for the CPU filter: CPU is
	// a limit (a CFS quota), not a reservation. Memory is not
	// overcommitted: a memory limit that is hit kills the process.
	CPUOvercommit float64
}

// Defaults of Config's fields.
const (
	DefaultImageLocalityWeight = 2.0
	DefaultPreCreatedWeight    = 1.0
	DefaultBalanceWeight       = 1.0
	DefaultCPUOvercommit       = 16.0
)

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ImageLocalityWeight == 0 {
		c.ImageLocalityWeight = DefaultImageLocalityWeight
	}
	if c.PreCreatedWeight == 0 {
		c.PreCreatedWeight = DefaultPreCreatedWeight
	}
	if c.BalanceWeight == 0 {
		c.BalanceWeight = DefaultBalanceWeight
	}
	if c.CPUOvercommit == 0 {
		c.CPUOvercommit = DefaultCPUOvercommit
	}
	return c
}

// Candidate is a node as the filter and score see it.
type Candidate struct {
	// CPU (cores) and Memory (bytes) are the node's capacity. A node that
	// reports none takes nothing.
	CPU    float64
	Memory int64
	// AllocCPU and AllocMemory are the limits of what is already placed
	// there.
	AllocCPU    float64
	AllocMemory int64
	// HasImage says the node holds the image to run.
	HasImage bool
	// PreCreated says the node holds a pre-created task of the revision
	// to place, which starts faster than a cold one.
	PreCreated bool
}

// Request is the limits of the one thing to place: a replica or a job
// pod. A zero Request scores the node as it is.
type Request struct {
	CPU    float64
	Memory int64
}

// Fits is the filter: the node has the CPU (overcommitted) and the
// memory (not) for r on top of what it runs.
func Fits(cfg Config, c Candidate, r Request) bool {
	const eps = 1e-9
	return c.AllocCPU+r.CPU <= c.CPU*cfg.CPUOvercommit+eps && c.AllocMemory+r.Memory <= c.Memory
}

// Score is the weighted sum of the plugins' 0..100 scores for placing r
// on the node: image locality, a pre-created task, and the balance of
// the capacity left free after placing.
func Score(cfg Config, c Candidate, r Request) float64 {
	s := 0.0
	if c.HasImage {
		s += cfg.ImageLocalityWeight * 100
	}
	if c.PreCreated {
		s += cfg.PreCreatedWeight * 100
	}
	cpu, mem := c.AllocCPU+r.CPU, c.AllocMemory+r.Memory
	freeCPU, freeMem := 0.0, 0.0
	if schedulable := c.CPU * cfg.CPUOvercommit; schedulable > 0 {
		freeCPU = max((schedulable-cpu)/schedulable, 0)
	}
	if c.Memory > 0 {
		freeMem = max(float64(c.Memory-mem)/float64(c.Memory), 0)
	}
	s += cfg.BalanceWeight * 100 * (freeCPU + freeMem) / 2
	return s
}
