package main

// A stand-in for the provider's built-in reflection service, until it is
// on main: it answers with the wire types of package reflection, for the
// demo's arith service and the test's Echo service only. Delete this file
// once the provider serves reflection itself.

import (
	"context"
	"fmt"

	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/reflection"
)

type standinReflection struct{}

var argsSchema = `{"type":"object","properties":{"A":{"type":"integer"},"B":{"type":"integer"}},"additionalProperties":false}`

var described = map[string]reflection.DescribeResponse{
	"Arith.Add":   {Method: "Arith.Add", Kind: reflection.Unary, ArgsType: "arith.Args", ReplyType: "int", ArgsSchema: argsSchema, ReplySchema: `{"type":"integer"}`, Example: `{"A":0,"B":0}`},
	"Arith.Div":   {Method: "Arith.Div", Kind: reflection.Unary, ArgsType: "arith.Args", ReplyType: "int", ArgsSchema: argsSchema, ReplySchema: `{"type":"integer"}`, Example: `{"A":0,"B":0}`},
	"Arith.Sleep": {Method: "Arith.Sleep", Kind: reflection.Unary, ArgsType: "int", ReplyType: "string", ArgsSchema: `{"type":"integer"}`, ReplySchema: `{"type":"string"}`, Example: `0`},
}

func (standinReflection) List(ctx context.Context, _ reflection.ListRequest, reply *reflection.ListResponse) error {
	unary := func(names ...string) []reflection.MethodInfo {
		var ms []reflection.MethodInfo
		for _, n := range names {
			ms = append(ms, reflection.MethodInfo{Name: n, Kind: reflection.Unary})
		}
		return ms
	}
	*reply = reflection.ListResponse{Services: []reflection.ServiceInfo{
		{Name: "Arith", Methods: unary("Add", "Div", "Mul", "Sleep", "Stats")},
		{Name: "Echo", Methods: unary("Meta")},
		{Name: health.Service, Methods: unary("Check")},
		{Name: reflection.Service, Methods: unary("Describe", "List")},
	}}
	return nil
}

func (standinReflection) Describe(ctx context.Context, req reflection.DescribeRequest, reply *reflection.DescribeResponse) error {
	d, ok := described[req.Method]
	if !ok {
		return fmt.Errorf("no method %q", req.Method)
	}
	*reply = d
	return nil
}
