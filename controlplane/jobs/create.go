package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Create writes a new job, for what makes jobs other than the API (a cron
// trigger that creates a job per run, as a Kubernetes CronJob does): the
// controller runs it from its next tick. It validates the names and the
// spec (errors are api.ValidationErrors naming the field) and fails with a
// wrapped store.ErrConflict if the job exists. It does not check the
// namespace: the caller acts for something that lives in it.
func Create(ctx context.Context, st store.Store, namespace, name string, spec api.JobSpec, now time.Time) (store.Job, error) {
	if namespace == "" {
		namespace = api.DefaultNamespace
	}
	if err := api.ValidateQualified(namespace, name); err != nil {
		return store.Job{}, err
	}
	if err := spec.Validate(); err != nil {
		return store.Job{}, err
	}
	job := store.Job{Name: name, Namespace: namespace, Spec: spec.WithDefaults(), CreatedAt: now.UTC()}
	qualified := api.QualifiedName(namespace, name)
	if _, err := st.Txn(ctx, store.PutJSON(store.JobKey(qualified), job, store.MustNotExist)); err != nil {
		return store.Job{}, fmt.Errorf("create job %s: %w", qualified, err)
	}
	return job, nil
}
