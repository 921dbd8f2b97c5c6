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
// Placement uses the filter and score replicas are placed by
// (internal/placement, shared with the autoscaler), with its default
// weights: among the live nodes (heartbeat within NodeDownAfter, or three
// heartbeat intervals) where the pod fits (CPU limits overcommitted 16
// times, memory not at all, counting what the heartbeat reports plus the
// job pods not started yet), the one holding the image, then with the
// most free capacity; ties go to the node with the fewest job pods, then
// by name. A pod that fits nowhere waits, as a Kubernetes pod stays
// Pending. A node that reports no capacity takes no pod.
//
// A namespace quota that caps replicas, memory or CPU holds job pods too:
// each unfinished pod counts as a replica with its limits, beside the
// replicas the autoscaler last decided for the namespace's revisions. A
// pod that would take the namespace past its quota waits, and the job's
// status.waiting says why. The autoscaler, in turn, takes the job pods'
// share off the quota before the namespace's revisions share the rest
// (quota.Clip's reserved).
package jobs
