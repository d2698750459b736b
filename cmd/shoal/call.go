package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/gateway"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/reflection"
)

// commonFlags are the flags of every command that calls a TARGET.
type commonFlags struct {
	timeout time.Duration
	md      metadataFlag
	proxy   proxyFlags
	tls     tlsFlags
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	c.md = metadataFlag{}
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of a call (and of connecting)")
	fs.Var(c.md, "H", "metadata `key=value` sent with the call (repeatable)")
	c.proxy.register(fs, consumer.Failfast)
	c.tls.register(fs)
}

// open dials the TARGET argument.
func (c *commonFlags) open(ctx context.Context, arg string) (*conn, target, error) {
	if err := positive("timeout", c.timeout); err != nil {
		return nil, target{}, err
	}
	t, err := parseTarget(arg)
	if err != nil {
		return nil, t, err
	}
	tlsOpts, err := c.tls.dialOptions()
	if err != nil {
		return nil, t, err
	}
	cn, err := dial(ctx, t, c.timeout, tlsOpts, c.proxy.options()...)
	return cn, t, err
}

// openCall prepares a call from the arguments TARGET Service.Method
// [JSON] (or the body of -d/-data): it checks the method's name, reads and
// parses the body, dials the TARGET and, with check, checks the body
// against the method's args schema. The caller closes the connection.
func (c *commonFlags) openCall(ctx context.Context, e *env, pos []string, data string, check bool) (*conn, target, json.RawMessage, error) {
	if err := checkMethodName(pos[1]); err != nil {
		return nil, target{}, nil, err
	}
	body, err := readBody(e, argAt(pos, 2), len(pos) == 3, data)
	if err != nil {
		return nil, target{}, nil, err
	}
	argsJSON, err := parseBody(body)
	if err != nil {
		return nil, target{}, nil, err
	}
	cn, t, err := c.open(ctx, pos[0])
	if err != nil {
		return nil, t, nil, err
	}
	if check {
		if err := checkArgs(ctx, c, cn, t, pos[1], argsJSON); err != nil {
			cn.Close()
			return nil, t, nil, err
		}
	}
	return cn, t, argsJSON, nil
}

// callCtx returns a call's context: the deadline and the metadata.
func (c *commonFlags) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	if len(c.md) > 0 {
		ctx = consumer.WithMetadata(ctx, c.md)
	}
	return ctx, cancel
}

func runList(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlags(e, "list", "TARGET [Service]", "Lists the services and methods the provider serves, with their kind, through its reflection service.")
	cf.register(fs)
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	cn, t, err := cf.open(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cn.Close()
	list, err := listServices(ctx, &cf, cn, t)
	if err != nil {
		return err
	}
	var b strings.Builder
	found := false
	for _, s := range list.Services {
		if len(pos) == 2 && s.Name != pos[1] {
			continue
		}
		found = true
		width := 0
		for _, m := range s.Methods {
			width = max(width, len(s.Name)+1+len(m.Name))
		}
		fmt.Fprintf(&b, "%s\n", s.Name)
		for _, m := range s.Methods {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, s.Name+"."+m.Name, m.Kind)
		}
	}
	if !found && len(pos) == 2 {
		var names []string
		for _, s := range list.Services {
			names = append(names, s.Name)
		}
		return &exitError{exitUnknown, fmt.Sprintf("unknown service: %s serves no service %q%s; it serves %s", t, pos[1], suggestion(pos[1], names), strings.Join(names, ", "))}
	}
	_, err = e.stdout.Write([]byte(b.String()))
	return err
}

// listServices calls the reflection service's List.
func listServices(ctx context.Context, cf *commonFlags, cn *conn, t target) (*reflection.ListResponse, error) {
	cctx, cancel := cf.callCtx(ctx)
	defer cancel()
	var list reflection.ListResponse
	if err := callJSON(cctx, cn, reflection.ListMethod, reflection.ListRequest{}, &list); err != nil {
		return nil, noReflection(t, err)
	}
	return &list, nil
}

// noReflection explains a provider without the reflection service.
func noReflection(t target, err error) error {
	if errors.Is(err, consumer.ErrUnknownService) {
		return &exitError{exitUnknown, fmt.Sprintf("unknown service: %s serves no reflection service (%s): it is turned off there, or the provider predates it; `shoal call` still works with a method's name", t, reflection.Service)}
	}
	return err
}

// callJSON calls method with args encoded as JSON and decodes the JSON
// reply into reply.
func callJSON(ctx context.Context, cn *conn, method string, args, reply any) error {
	var raw json.RawMessage
	if err := cn.Call(ctx, method, args, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, reply); err != nil {
		return fmt.Errorf("%w: %s's reply: %v", consumer.ErrReplyDecode, method, err)
	}
	return nil
}

func runDescribe(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlags(e, "describe", "TARGET Service.Method", "Shows a method's kind, its args and reply types as JSON Schema, and an example body to call it with.")
	cf.register(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if err := checkMethodName(pos[1]); err != nil {
		return err
	}
	cn, t, err := cf.open(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cn.Close()
	d, err := describe(ctx, &cf, cn, t, pos[1])
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)\n\nargs: %s\n%s\n\nreply: %s\n%s\n\nexample:\n  shoal call %s %s %s\n",
		d.Method, d.Kind, d.ArgsType, indentJSON(d.ArgsSchema), d.ReplyType, indentJSON(d.ReplySchema),
		shellQuote(t.raw), d.Method, shellQuote(compactJSON(d.Example)))
	_, err = e.stdout.Write([]byte(b.String()))
	return err
}

// describe calls the reflection service's Describe; an unknown method is
// an error that suggests the closest names.
func describe(ctx context.Context, cf *commonFlags, cn *conn, t target, method string) (*reflection.DescribeResponse, error) {
	cctx, cancel := cf.callCtx(ctx)
	defer cancel()
	var d reflection.DescribeResponse
	err := callJSON(cctx, cn, reflection.DescribeMethod, reflection.DescribeRequest{Method: method}, &d)
	if err == nil {
		return &d, nil
	}
	if errors.Is(err, consumer.ErrUnknownService) && strings.Contains(err.Error(), reflection.Service) {
		return nil, noReflection(t, err)
	}
	if unknown := unknownMethod(ctx, cf, cn, t, method); unknown != nil {
		return nil, unknown
	}
	return nil, err
}

// unknownMethod returns the error for a method t does not serve, with the
// closest names it serves, or nil when it serves method or cannot list
// what it serves.
func unknownMethod(ctx context.Context, cf *commonFlags, cn *conn, t target, method string) error {
	list, err := listServices(ctx, cf, cn, t)
	if err != nil {
		return nil
	}
	var all, services []string
	for _, s := range list.Services {
		services = append(services, s.Name)
		for _, m := range s.Methods {
			all = append(all, s.Name+"."+m.Name)
		}
	}
	if slices.Contains(all, method) {
		return nil
	}
	svc, _, _ := strings.Cut(method, ".")
	kind := protocol.StatusUnknownMethod.String()
	if !slices.Contains(services, svc) {
		kind = protocol.StatusUnknownService.String()
	}
	msg := fmt.Sprintf("%s: %s does not serve %s", kind, t, method)
	if s := suggestion(method, all); s != "" {
		msg += s
	} else {
		msg += "; `shoal list " + shellQuote(t.raw) + "` lists what it serves"
	}
	return &exitError{exitUnknown, msg}
}

func runCall(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlags(e, "call", "TARGET Service.Method [JSON] [flags]", "Calls a method with a JSON body (the args) and prints the reply as JSON.\nWithout a body, or with an empty one, the args are the type's zero value.")
	cf.register(fs)
	data := fs.String("d", "", "the body: `JSON`, @file, or @- for stdin")
	check := fs.Bool("check", true, "check the body against the method's args schema (from the reflection service) before calling, naming a field that does not fit")
	pos, err := parse(fs, args, 2, 3)
	if err != nil {
		return err
	}
	cn, t, argsJSON, err := cf.openCall(ctx, e, pos, *data, *check)
	if err != nil {
		return err
	}
	defer cn.Close()
	cctx, cancel := cf.callCtx(ctx)
	defer cancel()
	var reply json.RawMessage
	if err := cn.Call(cctx, pos[1], argsJSON, &reply); err != nil {
		if errors.Is(err, consumer.ErrUnknownMethod) || errors.Is(err, consumer.ErrUnknownService) {
			if unknown := unknownMethod(ctx, &cf, cn, t, pos[1]); unknown != nil {
				return unknown
			}
		}
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, reply, "", "  "); err != nil {
		out.Reset()
		out.Write(reply)
	}
	out.WriteByte('\n')
	_, err = e.stdout.Write(out.Bytes())
	return err
}

// checkArgs checks a body against the method's args schema, when the
// provider has a reflection service: a field the args type does not have
// would otherwise be dropped without a word by the JSON decoder, and a
// value of the wrong type is named by field before anything is sent. A
// provider without reflection, or a method it cannot describe, is left to
// the call itself.
func checkArgs(ctx context.Context, cf *commonFlags, cn *conn, t target, method string, args json.RawMessage) error {
	cctx, cancel := cf.callCtx(ctx)
	defer cancel()
	var d reflection.DescribeResponse
	if err := callJSON(cctx, cn, reflection.DescribeMethod, reflection.DescribeRequest{Method: method}, &d); err != nil {
		if errors.Is(err, consumer.ErrUnknownService) || errors.Is(err, consumer.ErrUnknownMethod) || errors.As(err, new(*consumer.ServiceError)) {
			return nil // no reflection, or an unknown method: the call says so
		}
		return err
	}
	if err := validate(d.ArgsSchema, args); err != nil {
		return usagef("the body does not fit %s's args (%s): %v; `shoal describe %s %s` shows the schema (-check=false sends it anyway)",
			method, d.ArgsType, err, shellQuote(t.raw), method)
	}
	return nil
}

// parseBody checks a body is JSON; empty is null.
func parseBody(body string) (json.RawMessage, error) {
	if strings.TrimSpace(body) == "" {
		return json.RawMessage("null"), nil
	}
	var raw json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, usagef("the body is not JSON: %v at byte %d of %s", err, se.Offset, shorten(body))
		}
		return nil, usagef("the body is not JSON: %v", err)
	}
	return raw, nil
}

// checkMethodName checks "Service.Method".
func checkMethodName(m string) error {
	svc, meth, ok := strings.Cut(m, ".")
	if !ok || svc == "" || meth == "" || strings.Contains(meth, ".") {
		return usagef("method %q: want Service.Method, e.g. Arith.Add", m)
	}
	return nil
}

func argAt(pos []string, i int) string {
	if i < len(pos) {
		return pos[i]
	}
	return ""
}

// suggestion returns "; did you mean X?" (or "X or Y") for the names
// closest to name, or "" when none is close.
func suggestion(name string, names []string) string {
	type scored struct {
		name string
		d    int
	}
	var close []scored
	for _, n := range names {
		d := distance(strings.ToLower(name), strings.ToLower(n))
		if strings.EqualFold(n, name) {
			d = 0
		}
		if d <= max(1, len(name)/3) && d < len(name) {
			close = append(close, scored{n, d})
		}
	}
	if len(close) == 0 {
		return ""
	}
	slices.SortStableFunc(close, func(a, b scored) int { return a.d - b.d })
	var out []string
	for _, c := range close[:min(3, len(close))] {
		if c.d == close[0].d { // the closest only: ties, not also-rans
			out = append(out, c.name)
		}
	}
	return "; did you mean " + strings.Join(out, " or ") + "?"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func indentJSON(s string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "", "  ") != nil {
		return s
	}
	return b.String()
}

func compactJSON(s string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(s)) != nil {
		return s
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shorten(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%q…", s[:60])
	}
	return fmt.Sprintf("%q", s)
}

// statusOf is gateway.StatusOf, for the load report.
var statusOf = gateway.StatusOf
