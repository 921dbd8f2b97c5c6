// Package jobs is the job controller: it runs each run-to-completion job
// (api.Job) to its end, as Kubernetes' job controller does.
//
// The pure core, decide, takes a job, its pods as the store shows them and
// the time, and says what to do: fold finished pods into the job's status,
// create pods up to min(parallelism, completions left) active, fail the job
// once more than backoffLimit pods failed or its activeDeadline passed
// (killing what still runs), and delete it ttlAfterFinished after it
// finished. The Runner is the shell: every Tick it reads the jobs, the job
// pods, their node agents' reports and the nodes, applies decide's answer
// in one transaction per job at the version it read (so that two control
// planes never both act on one reading), and deletes the pods and reports
// of jobs that no longer exist.
//
// Placement is the simplest fair choice: the live node (heartbeat within
// NodeDownAfter, or three heartbeat intervals) running the fewest job pods,
// ties broken by name. It does not weigh CPU or memory as the autoscaler's
// placement does, which lives in the autoscaler component and is not
// reachable from here.
package jobs
