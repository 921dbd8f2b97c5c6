package api

import "time"

// Node is one entry of GET /v1/nodes: a node agent's heartbeat with its
// capacity, allocation, image cache and pre-created task pool.
//
// It has the JSON shape of store.Node, which the control plane serves as is;
// api cannot import store, so the client decodes into this copy, and a test
// in this package keeps the two field for field.
type Node struct {
	Name              string    `json:"name"`
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
