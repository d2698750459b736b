//go:build tools

// Package consul pins the Consul version that shoal's integration tests run
// against. It is a separate module so that Consul's large dependency graph
// never reaches the main module's go.mod. Build the binary with
// scripts/consul.sh build.
package consul

import _ "github.com/hashicorp/consul"
