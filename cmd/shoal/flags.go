package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
)

// newFlags returns a command's flag set; its usage goes to e.stderr.
func newFlags(e *env, name, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: shoal %s %s\n\n%s\n\n", name, usage, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args with flags and arguments in any order ("shoal call T
// M '{}' -timeout 2s" as well as "shoal call -timeout 2s T M '{}'"), and
// returns the arguments; after "--" everything is an argument. It checks
// there are between min and max arguments.
func parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{err} // the flag package printed the usage
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		fs.Usage()
		return nil, usagef("%s: want %s", fs.Name(), argsWanted(min, max))
	case len(pos) > max:
		return nil, usagef("%s: unexpected arguments %q (want %s; quote a JSON body: '{\"A\":1}')", fs.Name(), pos[max:], argsWanted(min, max))
	}
	return pos, nil
}

func argsWanted(min, max int) string {
	if min == max {
		return fmt.Sprintf("%d arguments", min)
	}
	return fmt.Sprintf("%d to %d arguments", min, max)
}

// metadataFlag is -H key=value, repeatable.
type metadataFlag map[string]string

func (m metadataFlag) String() string { return "" }

func (m metadataFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		if k, v, ok = strings.Cut(s, ":"); !ok {
			return fmt.Errorf("want key=value, got %q", s)
		}
	}
	k = strings.TrimSpace(k)
	if k == "" {
		return fmt.Errorf("empty key in %q", s)
	}
	m[k] = strings.TrimSpace(v)
	return nil
}

// proxyFlags are the flags of a registry TARGET's ClientProxy.
type proxyFlags struct {
	lb      loadbalance.Mode
	fail    consumer.FailMode
	retries int
}

func (p *proxyFlags) register(fs *flag.FlagSet, defaultFail consumer.FailMode) {
	p.lb, p.fail, p.retries = loadbalance.RoundRobin, defaultFail, 2
	fs.Func("lb", "load-balancing `mode` for a registry TARGET: "+modeNames()+" (default roundrobin)", func(s string) error {
		m, err := loadbalance.ParseMode(s)
		p.lb = m
		return err
	})
	fs.Func("fail", "fail `mode` for a registry TARGET: failfast, failover, failretry or failbackup (default "+defaultFail.String()+")", func(s string) error {
		m, err := consumer.ParseFailMode(s)
		p.fail = m
		return err
	})
	fs.IntVar(&p.retries, "retries", 2, "retries of a call that may have run, for -fail failover, failretry and failbackup")
}

func (p *proxyFlags) options() []consumer.ProxyOption {
	return []consumer.ProxyOption{consumer.WithLoadBalance(p.lb), consumer.WithFailMode(p.fail), consumer.WithRetries(p.retries)}
}

func modeNames() string {
	var names []string
	for _, m := range loadbalance.Modes() {
		names = append(names, m.String())
	}
	return strings.Join(names, ", ")
}

// readBody returns a JSON body given as an argument, or by -d: "JSON",
// "@file" or "@-" for stdin. Both at once is an error; neither is "",
// which callers read as null (the args type's zero value).
func readBody(e *env, arg string, hasArg bool, data string) (string, error) {
	if hasArg && data != "" {
		return "", usagef("a body given twice: as an argument and with -d")
	}
	if hasArg {
		return arg, nil
	}
	switch {
	case data == "@-":
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return "", fmt.Errorf("reading the body from stdin: %w", err)
		}
		return string(b), nil
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return "", &usageError{fmt.Errorf("-d %s: %w", data, err)}
		}
		return string(b), nil
	}
	return data, nil
}

// positive checks a duration flag.
func positive(name string, d time.Duration) error {
	if d <= 0 {
		return usagef("-%s %v: want a positive duration", name, d)
	}
	return nil
}
