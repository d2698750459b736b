// Package integration tests provider and consumer together over real
// loopback connections. It holds tests only; it sits apart because provider
// and consumer never import each other.
package integration
