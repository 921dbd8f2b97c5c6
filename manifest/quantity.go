package manifest

import (
	"fmt"
	"math/big"
	"regexp"
)

// Kubernetes quantities ("500m", "128Mi", "1G", "1e3") parsed exactly with
// big.Rat: a small parser instead of k8s.io/apimachinery, whose resource
// package would bring a large dependency tree for two fields.

var quantityRE = regexp.MustCompile(`^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$`)

var quantitySuffixes = map[string]*big.Rat{
	"n": big.NewRat(1, 1_000_000_000), "u": big.NewRat(1, 1_000_000), "m": big.NewRat(1, 1000),
	"k": big.NewRat(1e3, 1), "M": big.NewRat(1e6, 1), "G": big.NewRat(1e9, 1),
	"T": big.NewRat(1e12, 1), "P": big.NewRat(1e15, 1), "E": big.NewRat(1e18, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1), "Pi": big.NewRat(1<<50, 1), "Ei": big.NewRat(1<<60, 1),
}

// maxQuantity bounds quantities far above any real limit, so that the
// conversions below cannot overflow.
var maxQuantity = big.NewRat(1<<60, 1)

// ParseQuantity parses a Kubernetes quantity into an exact rational. It
// refuses negative values.
func ParseQuantity(s string) (*big.Rat, error) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%q is not a Kubernetes quantity such as 500m, 128Mi or 1G", truncate(s))
	}
	num, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return nil, fmt.Errorf("%q is not a Kubernetes quantity", truncate(s))
	}
	switch {
	case m[2] != "":
		var exp int
		if _, err := fmt.Sscanf(m[2][1:], "%d", &exp); err != nil || exp > 30 || exp < -30 {
			return nil, fmt.Errorf("%q: exponent out of range", truncate(s))
		}
		ten := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil))
		if exp < 0 {
			num.Quo(num, ten)
		} else {
			num.Mul(num, ten)
		}
	case m[3] != "":
		num.Mul(num, quantitySuffixes[m[3]])
	}
	if num.Sign() < 0 {
		return nil, fmt.Errorf("%q must not be negative", truncate(s))
	}
	if num.Cmp(maxQuantity) > 0 {
		return nil, fmt.Errorf("%q is too large", truncate(s))
	}
	return num, nil
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// ParseCPU parses a CPU quantity into cores: "500m" is 0.5, "2" is 2. It
// must be at least one millicore, the unit ebb counts CPU in.
func ParseCPU(s string) (float64, error) {
	q, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	if q.Cmp(big.NewRat(1, 1000)) < 0 {
		return 0, fmt.Errorf("cpu %q is below 1m (one millicore)", truncate(s))
	}
	f, _ := q.Float64()
	return f, nil
}

// ParseMemory parses a memory quantity into bytes, rounding a fraction of
// a byte up as Kubernetes does.
func ParseMemory(s string) (int64, error) {
	q, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	if q.Sign() == 0 {
		return 0, fmt.Errorf("memory %q must be positive", truncate(s))
	}
	n := new(big.Int).Quo(q.Num(), q.Denom())
	if new(big.Rat).SetInt(n).Cmp(q) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if n.Cmp(big.NewInt(1<<50)) > 0 {
		return 0, fmt.Errorf("memory %q is too large", truncate(s))
	}
	return n.Int64(), nil
}

// FormatBytes writes a byte count in the form api.ParseBytes reads: Gi,
// Mi or Ki when exact, else plain bytes.
func FormatBytes(b int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b >= u.n && b%u.n == 0 {
			return fmt.Sprintf("%d%s", b/u.n, u.suffix)
		}
	}
	return fmt.Sprintf("%d", b)
}
