package provider

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/reflection"
)

// WithoutReflection leaves out the built-in reflection service
// (reflection.Service, "ShoalReflection"), which a server otherwise serves:
// List and Describe tell any caller — the shoal command, GET / over HTTP —
// the names and the JSON Schema of the args and reply of every method. Turn
// it off when that is more than callers should learn; calls go through the
// interceptors (and WithAuth) like any other, which can also restrict it.
func WithoutReflection() Option {
	return func(o *options) { o.noReflection = true }
}

// registerReflection registers the reflection service; NewServer calls it.
func (s *Server) registerReflection() {
	if err := s.register(reflection.Service, &reflectionService{s: s}); err != nil {
		s.opts.logger.Error("provider: the reflection service", "err", err) // cannot happen: a fresh server
	}
}

// reflectionService is the built-in ShoalReflection service.
type reflectionService struct{ s *Server }

// kind is how m is called: unary, or the stream kind its shape says.
func (m *method) kind() reflection.Kind {
	if m.callKind == "" {
		return reflection.Unary
	}
	return m.callKind
}

// List answers every service and method the server serves, sorted, the
// built-in ones included.
func (r *reflectionService) List(_ context.Context, _ *reflection.ListRequest, resp *reflection.ListResponse) error {
	bySvc := map[string][]reflection.MethodInfo{}
	for name, mt := range *r.s.methods.Load() {
		svc, meth, _ := strings.Cut(name, ".")
		bySvc[svc] = append(bySvc[svc], reflection.MethodInfo{Name: meth, Kind: mt.kind()})
	}
	resp.Services = make([]reflection.ServiceInfo, 0, len(bySvc))
	for svc, methods := range bySvc {
		slices.SortFunc(methods, func(a, b reflection.MethodInfo) int { return strings.Compare(a.Name, b.Name) })
		resp.Services = append(resp.Services, reflection.ServiceInfo{Name: svc, Methods: methods})
	}
	slices.SortFunc(resp.Services, func(a, b reflection.ServiceInfo) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// Describe answers the kind, the Go type names, the JSON Schemas of the args
// and reply, and an example args body of one method, named
// "Service.Method". The schemas describe the JSON form (the JSON codec and
// the HTTP side); see reflection.Schema.
func (r *reflectionService) Describe(_ context.Context, req *reflection.DescribeRequest, resp *reflection.DescribeResponse) error {
	mt, status := r.s.lookup(req.Method)
	switch {
	case status == protocol.StatusBadRequest:
		return fmt.Errorf("describe: %q is not of the form Service.Method", req.Method)
	case status != protocol.StatusOK:
		return errors.New("describe: " + r.s.unknownMessage(req.Method, status))
	}
	args, replyType := mt.describedTypes()
	if args.Kind() == reflect.Pointer {
		args = args.Elem() // the body decodes into what it points to
	}
	argsSchema, err := reflection.Schema(args)
	if err != nil {
		return fmt.Errorf("describe %s args: %w", req.Method, err)
	}
	replySchema, err := reflection.Schema(replyType)
	if err != nil {
		return fmt.Errorf("describe %s reply: %w", req.Method, err)
	}
	*resp = reflection.DescribeResponse{
		Method:      mt.name,
		Kind:        mt.kind(),
		ArgsType:    reflection.TypeName(mt.argTypeOrMsg()),
		ReplyType:   reflection.TypeName(replyType),
		ArgsSchema:  argsSchema,
		ReplySchema: replySchema,
		Example:     reflection.Example(args),
	}
	return nil
}
