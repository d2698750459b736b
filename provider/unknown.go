package provider

import (
	"slices"
	"strconv"
	"strings"

	"github.com/shoalrpc/shoal/protocol"
)

// maxSuggested bounds the names an unknown-service or unknown-method answer
// lists, so that a server with many methods answers a typo briefly.
const maxSuggested = 20

// unknownMessage explains to the caller why name was not found, and what this
// server serves instead. It runs only on the error path: the lookup of a
// known method never builds it.
func (s *Server) unknownMessage(name string, status protocol.Status) string {
	methods := *s.methods.Load()
	var b strings.Builder
	b.WriteString(strconv.Quote(name))
	dot := strings.LastIndexByte(name, '.') // lookup answered "bad request" without one
	svc, meth := name[:dot], name[dot+1:]
	var have []string
	if status == protocol.StatusUnknownMethod {
		b.WriteString(": service " + svc + " has no method " + strconv.Quote(meth) + "; it has ")
		for k := range methods {
			if s, m, _ := strings.Cut(k, "."); s == svc {
				have = append(have, m)
			}
		}
		slices.Sort(have)
		list(&b, have)
	} else {
		b.WriteString(": no service " + strconv.Quote(svc) + " on this server; ")
		for k := range *s.services.Load() {
			if !builtinService(k) {
				have = append(have, k)
			}
		}
		if len(have) == 0 {
			b.WriteString("it serves nothing yet")
			return b.String()
		}
		slices.Sort(have)
		b.WriteString("it serves ")
		list(&b, have)
		b.WriteString(` (a call names "Service.Method" as Register or RegisterName named it, not the registry's service name)`)
	}
	// The usual mistakes: the registry's service name ("arith", "kv") where
	// the call wants the Go type's ("Arith", "Store"), and a method's name in
	// the wrong case. Suggest a method whose name matches up to case, in
	// this service or, failing that, in any.
	var near, elsewhere []string
	for k := range methods {
		s, m, _ := strings.Cut(k, ".")
		switch {
		case strings.EqualFold(k, name):
			near = append(near, k)
		case s != svc && strings.EqualFold(m, meth) && !builtinService(s):
			elsewhere = append(elsewhere, k)
		}
	}
	if len(near) == 0 {
		near = elsewhere
	}
	if len(near) == 0 && status == protocol.StatusUnknownMethod {
		near = typos(meth, svc, methods)
	}
	if len(near) > 0 {
		slices.Sort(near)
		b.WriteString("; did you mean " + strconv.Quote(near[0]) + "?")
	}
	return b.String()
}

// list appends names, comma-separated, up to maxSuggested of them.
func list(b *strings.Builder, names []string) {
	for i, n := range names {
		if i == maxSuggested {
			b.WriteString(", … (" + strconv.Itoa(len(names)-i) + " more)")
			return
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
	}
}

// typos returns the methods of svc whose names are within two edits of
// meth, up to case ("Ad", "Adds", "Sbu" for "Add", "Sub"), closest first:
// a typo in a hand-written call (curl, the shoal command).
func typos(meth, svc string, methods map[string]*method) []string {
	best, found := 3, []string(nil)
	for k := range methods {
		s, m, _ := strings.Cut(k, ".")
		if s != svc {
			continue
		}
		switch d := editDistance(strings.ToLower(meth), strings.ToLower(m)); {
		case d < best:
			best, found = d, []string{k}
		case d == best:
			found = append(found, k)
		}
	}
	return found
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
