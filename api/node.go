package api

import "time"

// Node is a node agent's heartbeat with its capacity, allocation, image
// cache and pre-created task pool. The agent writes it to the store (where
// store.Node names this same type: store imports api, not the other way
// round) and GET /v1/nodes serves it as stored.
type Node struct {
	Name string `json:"name"`
	// AgentAddr is where the node agent serves logs and its own API.
	AgentAddr         string    `json:"agentAddr,omitempty"`
	CPU               float64   `json:"cpu"`
	MemoryBytes       int64     `json:"memoryBytes"`
	AllocatedCPU      float64   `json:"allocatedCpu"`
	AllocatedMemory   int64     `json:"allocatedMemory"`
	Images            []string  `json:"images"`
	Running           int       `json:"running"`
	PoolSize          int       `json:"poolSize"`
	PoolCapacity      int       `json:"poolCapacity"`
	PoolMemoryBytes   int64     `json:"poolMemoryBytes"`
	PoolMemoryBudget  int64     `json:"poolMemoryBudget"`
	EBPF              string    `json:"ebpf"`
	Heartbeat         time.Time `json:"heartbeat"`
	HeartbeatInterval Duration  `json:"heartbeatInterval"`
}

// NodeList is the body of GET /v1/nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}
