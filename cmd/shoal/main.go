// Command shoal pokes shoal services from the shell: it lists what a
// provider serves, describes a method's args and reply as JSON Schema,
// calls a method with a JSON body, checks health, watches a service's
// instances in a registry, puts a load on a method, and runs an HTTP/JSON
// gateway in front of a registry's services.
//
//	go install github.com/shoalrpc/shoal/cmd/shoal@latest
//	shoal list 127.0.0.1:9001
//	shoal call 127.0.0.1:9001 Arith.Add '{"A":40,"B":2}'
//
// `shoal help` lists the commands, the forms of a TARGET and the exit
// statuses. Calls use the JSON codec, so no Go types are needed; the
// provider decodes the body into the method's args type.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, signals))
}

// env is what a command runs with: its streams and the signals that stop it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	signals        <-chan os.Signal
	// stderrTTY says stderr is a terminal: load rewrites one progress line
	// there, instead of printing a line now and then.
	stderrTTY bool
}

// command is one subcommand.
type command struct {
	name    string
	usage   string // the arguments, after "shoal NAME"
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"list", "TARGET [Service]", "list the services and methods a provider serves", runList},
		{"describe", "TARGET Service.Method", "show a method's args and reply as JSON Schema, and an example body", runDescribe},
		{"call", "TARGET Service.Method [JSON] [-d JSON|@file|@-] [-H key=value]... [-timeout 10s]", "call a method and print its reply as JSON", runCall},
		{"health", "TARGET [service]", "check a provider's health (every instance of a registry target)", runHealth},
		{"watch", "REGISTRY-URL service", "print a service's instances as they change, until interrupted", runWatch},
		{"load", "TARGET Service.Method [JSON] [-c 50] [-d 10s] [-n calls]", "call a method at a concurrency and report latency and outcomes", runLoad},
		{"gateway", "-registry URL [-listen :8080] [-lb …] [-fail …]", "serve HTTP/JSON: POST /Service.Method calls the service's instances", runGateway},
	}
}

// run is the whole command: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, signals: signals, stderrTTY: isTerminal(stderr)}
	if len(args) == 0 {
		writeHelp(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		writeHelp(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		if c.name != "gateway" { // the gateway handles its signals itself
			go func() {
				select {
				case <-signals:
					stop()
				case <-ctx.Done():
				}
			}()
		}
		err := c.run(ctx, e, args[1:])
		if errors.Is(err, errHelp) {
			return exitOK
		}
		if err != nil {
			code, msg := describeError(err)
			fmt.Fprintln(stderr, "shoal: "+msg)
			return code
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "shoal: unknown command %q%s; `shoal help` lists them\n", name, suggestion(name, commandNames()))
	return exitUsage
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// writeHelp writes `shoal help`.
func writeHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString("shoal: call and inspect shoal services from the shell\n\nusage:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  shoal %s %s\n        %s\n", c.name, c.usage, c.summary)
	}
	b.WriteString(`
TARGET is where calls go:
  an address        127.0.0.1:9001 (tcp), tcp@host:port, unix@/path/sock, http@host:port
                    (http@ once the provider's HTTP side is in this build)
  a registry URL    consul://127.0.0.1:8500/arith, etcd://127.0.0.1:2379/shoal/arith,
  and a service     static://tcp@h1:9001,tcp@h2:9001/arith, dns:///arith.example:9001/arith
                    (the last path segment is the service; calls go through a ClientProxy:
                    -lb roundrobin|random|p2c_ewma|…, -fail failfast|failover|failretry|failbackup)
  memory:// is one process's own registry: a command cannot see it.

Bodies are JSON: the method's args as encoding/json writes the args type
('{"A":40,"B":2}'). "shoal describe" shows the schema and an example.
"shoal <command> -h" lists a command's flags.

Exit status:
  0  ok
  1  service error: the method ran and returned an error (its text is printed)
  2  usage: bad flags, a bad TARGET, a body that is not JSON or does not fit the args type
  3  unknown service or method (the closest names are suggested)
  4  bad request: the provider could not decode the args, or they were too large
  5  unavailable: no instance, no connection, shutting down, overloaded, refused
  6  deadline exceeded (-timeout), or interrupted
  7  unauthenticated
  8  internal error in the provider, or anything else
  9  health: the provider or service is not SERVING
`)
	io.WriteString(w, b.String())
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
