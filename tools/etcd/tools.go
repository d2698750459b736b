//go:build tools

// Package tools pins the etcd server that shoal's tests and demo run
// (scripts/etcd.sh builds go.etcd.io/etcd/server/v3 from this module, whose
// go.mod and go.sum fix every dependency). It is a separate module so the
// shoal module itself never depends on the etcd server.
package tools

import _ "go.etcd.io/etcd/server/v3"
