package runcstart

import "strings"

// Invocation is what Parse understood of runc's command line.
type Invocation struct {
	// Root is runc's state directory (--root), default DefaultRoot.
	Root string
	// Log is the file runc logs to (--log); empty means standard error.
	Log string
	// LogFormat is "text" or "json" (--log-format), default "text".
	LogFormat string
	// ID is the container a plain "start ID" names.
	ID string
}

// DefaultRoot is runc's state directory when --root is not given.
const DefaultRoot = "/run/runc"

// valueFlags are runc's global flags that take a value, as the shim passes
// them (go-runc's Runc.args).
var valueFlags = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// boolFlags are runc's global flags that take none.
var boolFlags = map[string]bool{"debug": true, "systemd-cgroup": true}

// Parse reports whether args (runc's arguments, without the program name)
// are a plain "start ID" that Start can carry out, and what they say.
// Anything else, including a flag it does not know, gets false, so the
// caller hands the command to runc.
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
					return Invocation{}, false
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
			return Invocation{}, false
		}
	}
	rest := args[i:]
	if len(rest) != 2 || rest[0] != "start" || !validID(rest[1]) {
		return Invocation{}, false
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
