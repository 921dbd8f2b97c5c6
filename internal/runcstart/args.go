package runcstart

import "strings"

// Invocation is what Parse understood of runc's command line: the global
// flags, and the container of a plain start.
type Invocation struct {
	// Root is runc's state directory (--root), default DefaultRoot.
	Root string
	// Log is the file runc logs to (--log); empty means standard error.
	Log string
	// LogFormat is "text" or "json" (--log-format), default "text".
	LogFormat string
	// ID is the container a plain "start ID" names, "" for any other
	// command.
	ID string
}

// DefaultRoot is runc's state directory when --root is not given.
const DefaultRoot = "/run/runc"

// valueFlags are runc's global flags that take a value, as the shim passes
// them (go-runc's Runc.args).
var valueFlags = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// boolFlags are runc's global flags that take none.
var boolFlags = map[string]bool{"debug": true, "systemd-cgroup": true}

// Parse reads args (runc's arguments, without the program name) and
// reports whether they are a plain "start ID" that Start can carry out.
// Anything else, including a flag it does not know, gets false, so the
// caller hands the command to runc; the global flags it did read are
// returned all the same, for logging.
func Parse(args []string) (Invocation, bool) {
	inv := Invocation{Root: DefaultRoot, LogFormat: "text"}
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch {
		case boolFlags[name] && !hasValue:
		case valueFlags[name]:
			if !hasValue {
				if i+1 >= len(args) {
					return inv, false
				}
				i++
				value = args[i]
			}
			switch name {
			case "root":
				inv.Root = value
			case "log":
				inv.Log = value
			case "log-format":
				inv.LogFormat = value
			}
		default:
			return inv, false
		}
	}
	rest := args[i:]
	if len(rest) != 2 || rest[0] != "start" || !validID(rest[1]) {
		return inv, false
	}
	inv.ID = rest[1]
	return inv, true
}

// validID is runc's rule for container IDs; it also keeps the ID from
// naming a path outside Root.
func validID(id string) bool {
	if id == "" || id == "." || id == ".." || len(id) > 1024 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}
