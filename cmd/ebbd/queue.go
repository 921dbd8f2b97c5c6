package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/cron"
	"github.com/ebbrun/ebb/invoker"
	"github.com/ebbrun/ebb/queue"
	queueembedded "github.com/ebbrun/ebb/queue/embedded"
	queueredis "github.com/ebbrun/ebb/queue/redis"
)

// openQueue opens the asynchronous invocations' queue beside the store:
// a bbolt file of its own next to the embedded store (so queue traffic
// does not grow the store's event log), or the same Redis as the store.
func openQueue(ctx context.Context, cfg Config) (queue.Queue, error) {
	if cfg.Store == "embedded" {
		q, err := queueembedded.Open(filepath.Join(cfg.DataDir, "queue.db"), queueembedded.Options{})
		if err != nil {
			return nil, fmt.Errorf("open embedded queue: %w", err)
		}
		return q, nil
	}
	q, err := queueredis.Open(ctx, cfg.Store, queueredis.Options{})
	if err != nil {
		return nil, fmt.Errorf("open redis queue: %w", err)
	}
	return q, nil
}

// invocations is the process's queue, opened on first use and closed
// with the daemon: the API, the router, the workers and cron share it.
func (d *daemon) invocations(ctx context.Context) (queue.Queue, error) {
	if d.queue != nil {
		return d.queue, nil
	}
	q, err := openQueue(ctx, d.cfg)
	if err != nil {
		return nil, err
	}
	d.queue = &wakingQueue{Queue: q}
	d.closers = append(d.closers, func() { _ = q.Close() })
	return d.queue, nil
}

// newCron builds the cron triggers' runner of a control plane, which the
// leader runs (runLeaderLoops); each run's claim in the store still lets
// one fire it across a change of leader.
func (d *daemon) newCron(ctx context.Context) (leaderLoop, error) {
	q, err := d.invocations(ctx)
	if err != nil {
		return nil, err
	}
	r, err := cron.New(cron.Config{}, cron.Deps{Store: d.leaderStore(), Queue: q, Logger: d.log.With("component", "cron"), Registerer: d.reg})
	if err != nil {
		return nil, err
	}
	return r.Run, nil
}

// startInvoker runs the workers that deliver queued invocations through
// this process's router, so the activator wakes a function at zero.
func (d *daemon) startInvoker(ctx context.Context, g *errgroup.Group, q queue.Queue) error {
	routerURL, err := invoker.RouterURLFor(d.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	w, err := invoker.New(invoker.Config{
		RouterURL: routerURL,
		Domain:    d.cfg.Domain,
		// Unique per process in the cluster: one router per node.
		Name:             d.cfg.NodeName + "/invoker",
		VisibilityMargin: d.cfg.InvokerVisibilityMargin,
	}, invoker.Deps{
		Queue:      q,
		Functions:  invoker.CacheFunctions(d.caches.Functions()),
		Logger:     d.log.With("component", "invoker"),
		Registerer: d.reg,
	})
	if err != nil {
		return err
	}
	if wq, ok := q.(*wakingQueue); ok {
		wq.setWaker(w.Wake)
	}
	g.Go(func() error { return w.Run(ctx) })
	return nil
}

// wakingQueue is the process's queue: an Enqueue that stores a new
// invocation (the router's async request, a cron run, the API's submit)
// wakes this process's invoker, so that it is claimed at once rather than
// at the invoker's next poll (up to 200ms later, most of a cron run's
// lateness). Work another process queues still waits for the poll.
type wakingQueue struct {
	queue.Queue
	waker atomic.Pointer[func()]
}

func (q *wakingQueue) setWaker(wake func()) { q.waker.Store(&wake) }

// Enqueue implements queue.Queue.
func (q *wakingQueue) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	stored, dup, err := q.Queue.Enqueue(ctx, inv)
	if wake := q.waker.Load(); err == nil && !dup && wake != nil {
		(*wake)()
	}
	return stored, dup, err
}
