// Package api holds ebb's wire types: the JSON that the control-plane API
// accepts and returns, their defaults and validation, and a typed client.
//
// It is imported by every component and by the CLI, so it must stay free of
// I/O beyond the client and must not import any other ebb package.
//
// A cron trigger's schedule is parsed by github.com/robfig/cron/v3
// (ParseCronSchedule), as the issue asks of a maintained library: it is
// the parser most Go schedulers use, it reads the five standard fields,
// the descriptors and @every, and it computes the next time in a zone
// across daylight-saving changes. Only its parser and Schedule.Next are
// used; its own scheduler (goroutines on the wall clock) is not, since
// firing must run on an injected clock and claim each run in the store.
// The zone database (time/tzdata) is built in, so every host reads a
// TimeZone alike.
package api
