// Package auth decides who may call which API route: roles and their
// permissions, the one table of every API route and the permission it
// needs, API tokens (ebb_<id>_<secret>, stored as a hash) and the
// Authenticator that turns a bearer token into a Principal.
//
// Authorize is pure: a principal, a permission and a namespace in, nil or a
// *ForbiddenError naming the missing permission out. The server looks a
// route's permission up in Routes and refuses to start with a route the
// table does not list, so no route is ever served unprotected by omission.
package auth
