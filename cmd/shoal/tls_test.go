package main

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/internal/testcert"
	"github.com/shoalrpc/shoal/provider"
)

// The calling commands speak TLS to a provider that serves it: -cacert
// trusts its CA, -cert and -key present a client certificate for mutual
// TLS; what does not fit is refused with a clear error.
func TestTLS(t *testing.T) {
	b := testcert.New(t)
	dir := t.TempDir()
	f := b.WritePEM(t, dir)
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)), provider.WithTLS(b.ServerConfig(true)))
	if err := srv.RegisterName("Arith", arith.New("tls")); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	mutual := []string{"-cacert", f.CA, "-cert", f.ClientCert, "-key", f.ClientKey}

	shoal(t, "", append([]string{"call", addr, "Arith.Add", `{"A":40,"B":2}`}, mutual...)...).expect(t, exitOK, want("42\n"), nil)
	shoal(t, "", append([]string{"list", addr}, mutual...)...).expect(t, exitOK, want("Arith.Add    unary"), nil)
	shoal(t, "", append([]string{"health", addr}, mutual...)...).expect(t, exitOK, want("SERVING\n"), nil)
	shoal(t, "", append([]string{"load", addr, "Arith.Add", "-data", `{"A":1,"B":2}`, "-n", "20"}, mutual...)...).expect(t, exitOK, want("[ok]  20 calls"), nil)

	// The system's CAs did not sign the test CA's certificate.
	shoal(t, "", "call", addr, "Arith.Add", `{}`, "-tls").expect(t, exitUnavailable, nil, want("certificate signed by unknown authority"))
	// Without a client certificate the provider refuses the handshake.
	shoal(t, "", "call", addr, "Arith.Add", `{}`, "-cacert", f.CA).expect(t, exitUnavailable, nil, want("certificate"))
	// Without TLS the connection is not the provider's protocol.
	if r := shoal(t, "", "call", addr, "Arith.Add", `{}`, "-timeout", "3s"); r.code == exitOK {
		t.Fatalf("a plain call to a TLS provider succeeded: %s", r.stdout)
	}
	// Misuse is a usage error, before anything is dialled.
	shoal(t, "", "call", addr, "Arith.Add", `{}`, "-cert", f.ClientCert).expect(t, exitUsage, nil, want("-cert and -key go together"))
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	shoal(t, "", "call", addr, "Arith.Add", `{}`, "-cacert", notPEM).expect(t, exitUsage, nil, want("no PEM certificate in it"))
	shoal(t, "", "health", addr, "-cacert", filepath.Join(dir, "missing.pem")).expect(t, exitUsage, nil, want("-cacert:", "no such file"))
}

// `shoal gateway` takes the same TLS flags for its connections to the
// providers: an HTTP call through it reaches a mutual-TLS provider.
func TestGatewayToATLSProvider(t *testing.T) {
	b := testcert.New(t)
	f := b.WritePEM(t, t.TempDir())
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)), provider.WithTLS(b.ServerConfig(true)))
	if err := srv.RegisterName("Arith", arith.New("tls")); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	g := startShoal(t, "gateway", "-listen", "127.0.0.1:0", "-registry", "static://tcp@"+addr,
		"-cacert", f.CA, "-cert", f.ClientCert, "-key", f.ClientKey)
	line, _ := g.stderr.waitFor(t, 0, "gateway: serving", g.exited)
	gw := strings.Fields(line[strings.Index(line, "addr=")+len("addr="):])[0]
	resp, err := http.Post("http://"+gw+"/Arith.Add", "application/json", strings.NewReader(`{"A":40,"B":2}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "42\n" {
		t.Fatalf("Arith.Add through the gateway: %d %q", resp.StatusCode, body)
	}
	if code := g.stop(t, syscall.SIGTERM); code != exitOK {
		t.Fatalf("gateway exited %d", code)
	}
}
