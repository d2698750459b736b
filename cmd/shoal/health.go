package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
)

func runHealth(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlags(e, "health", "TARGET [service]", "Asks the provider's health service (ShoalHealth.Check) for the provider as a whole, or for one\nservice it serves (\"Arith\"). For a registry TARGET, asks every instance the registry lists.\nWith -watch (an address TARGET), prints the status and then each change (ShoalHealth.Watch) until\ninterrupted, or until the provider ends the watch (it shuts down: the last status is NOT_SERVING).")
	cf.register(fs)
	watch := fs.Bool("watch", false, "print the status, then each change of it, until interrupted (an address TARGET only)")
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := positive("timeout", cf.timeout); err != nil {
		return err
	}
	if _, err := cf.tls.dialOptions(); err != nil {
		return err
	}
	t, err := parseTarget(pos[0])
	if err != nil {
		return err
	}
	service := argAt(pos, 1)
	if *watch {
		if t.addr == "" {
			return usagef("health -watch %q: watch one provider, at an address (tcp@host:port); a registry TARGET has many", t.raw)
		}
		return watchOne(ctx, e, &cf, t, service)
	}
	if t.addr != "" {
		status, err := checkOne(ctx, &cf, t.addr, service)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		fmt.Fprintln(e.stdout, status)
		if status != health.Serving {
			return &exitError{exitNotServing, fmt.Sprintf("%s is %s", describeHealthTarget(t.raw, service), status)}
		}
		return nil
	}
	// A registry target: every instance, each on its own connection.
	reg, err := naming.Open(t.registry, backends()...)
	if err != nil {
		return usagef("TARGET %q: %v", t.raw, err)
	}
	defer reg.Close()
	fctx, cancel := context.WithTimeout(ctx, cf.timeout)
	list, err := reg.Fetch(fctx, t.service)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	if len(list) == 0 {
		return &exitError{exitUnavailable, fmt.Sprintf("no instances: the registry lists no instance of %q", t.service)}
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	bad := 0
	for _, in := range list {
		status, err := checkOne(ctx, &cf, in.Addr, service)
		line := status.String()
		if err != nil {
			_, msg := describeError(err)
			line = "UNREACHABLE (" + msg + ")"
		}
		if err != nil || status != health.Serving {
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", in.ID, in.Addr, line)
	}
	tw.Flush()
	if bad > 0 {
		return &exitError{exitNotServing, fmt.Sprintf("%d of %d instances of %s are not SERVING", bad, len(list), describeHealthTarget(t.service, service))}
	}
	return nil
}

func describeHealthTarget(where, service string) string {
	if service == "" {
		return where
	}
	return fmt.Sprintf("service %s at %s", service, where)
}

// watchOne prints service's status at t.addr, then each change of it, until
// ctx ends (an interrupt: exit 0) or the provider ends the watch.
func watchOne(ctx context.Context, e *env, cf *commonFlags, t target, service string) error {
	dctx, cancel := context.WithTimeout(ctx, cf.timeout)
	tlsOpts, _ := cf.tls.dialOptions() // checked by runHealth
	c, err := consumer.DialContext(dctx, t.addr, append(tlsOpts, consumer.WithDialTimeout(cf.timeout))...)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	defer c.Close()
	wctx := ctx // no deadline: a watch lasts until interrupted
	if len(cf.md) > 0 {
		wctx = consumer.WithMetadata(wctx, cf.md)
	}
	octx, cancel := context.WithTimeout(wctx, cf.timeout) // the open may take -timeout at most
	w, err := openWatch(octx, wctx, c, service)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, consumer.ErrUnknownMethod) || errors.Is(err, consumer.ErrUnknownService) {
			return &exitError{exitUnknown, fmt.Sprintf("unknown method: %s serves no %s (a provider without streams, or WithoutHealth)", t.addr, health.WatchMethod)}
		}
		return fmt.Errorf("%s: %w", t, err)
	}
	defer w.Close()
	last := health.Unknown
	for {
		resp, err := w.Recv()
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: the normal end of a watch
		case errors.Is(err, io.EOF):
			return &exitError{exitNotServing, fmt.Sprintf("%s is %s: the provider ended the watch", describeHealthTarget(t.raw, service), last)}
		case err != nil:
			return fmt.Errorf("%s: watch: %w", t, err)
		}
		last = resp.Status
		fmt.Fprintln(e.stdout, last)
	}
}

// openWatch opens a ShoalHealth.Watch of service that lives under ctx; its
// open is bounded by openCtx.
func openWatch(openCtx, ctx context.Context, c *consumer.Client, service string) (*consumer.RecvStream[health.CheckResponse], error) {
	type opened struct {
		w   *consumer.RecvStream[health.CheckResponse]
		err error
	}
	done := make(chan opened, 1)
	go func() {
		w, err := consumer.OpenServerStream[health.CheckResponse](ctx, c, health.WatchMethod, &health.CheckRequest{Service: service})
		done <- opened{w, err}
	}()
	select {
	case o := <-done:
		return o.w, o.err
	case <-openCtx.Done():
		c.Close() // ends the open
		o := <-done
		if o.w != nil {
			o.w.Close()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("open %s: %w", health.WatchMethod, openCtx.Err())
	}
}

// checkOne asks the health service at addr about service.
func checkOne(ctx context.Context, cf *commonFlags, addr, service string) (health.Status, error) {
	ctx, cancel := cf.callCtx(ctx)
	defer cancel()
	tlsOpts, _ := cf.tls.dialOptions() // checked by runHealth
	c, err := consumer.DialContext(ctx, addr, append(tlsOpts, consumer.WithDialTimeout(cf.timeout))...)
	if err != nil {
		return health.Unknown, err
	}
	defer c.Close()
	var resp health.CheckResponse
	if err := c.Call(ctx, health.CheckMethod, health.CheckRequest{Service: service}, &resp); err != nil {
		if errors.Is(err, consumer.ErrUnknownService) && strings.Contains(err.Error(), health.Service) {
			return health.Unknown, &exitError{exitUnknown, fmt.Sprintf("unknown service: %s serves no health service (%s)", addr, health.Service)}
		}
		return health.Unknown, err
	}
	return resp.Status, nil
}

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "watch", "REGISTRY-URL service", "Prints the service's instances in the registry, and again each time they change, until interrupted.\nREGISTRY-URL/service works too.")
	timeout := fs.Duration("timeout", 10*time.Second, "how long the first list may take")
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := positive("timeout", *timeout); err != nil {
		return err
	}
	url, service := pos[0], argAt(pos, 1)
	if service == "" {
		t, err := parseTarget(url)
		if err != nil {
			return err
		}
		if t.addr != "" {
			return usagef("watch %q: want a registry URL and a service, e.g. consul://127.0.0.1:8500 arith", url)
		}
		url, service = t.registry, t.service
	} else if strings.HasPrefix(strings.ToLower(url), "memory:") {
		return usagef("memory:// is the registry of one process, which a command cannot see")
	}
	reg, err := naming.Open(url, backends()...)
	if err != nil {
		return &usageError{err}
	}
	defer reg.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := reg.Watch(wctx, service)
	if err != nil {
		return fmt.Errorf("watch %s: %w", service, err)
	}
	first := time.NewTimer(*timeout)
	defer first.Stop()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of a watch
		case <-first.C:
			if !seen {
				return &exitError{exitUnavailable, fmt.Sprintf("unavailable: no list of %q from %s within %v", service, url, *timeout)}
			}
		case list, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return &exitError{exitUnavailable, fmt.Sprintf("unavailable: the watch of %q ended", service)}
			}
			seen = true
			writeInstances(e, service, list)
		}
	}
}

// writeInstances prints one snapshot of a watch.
func writeInstances(e *env, service string, list []*naming.Instance) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s: %d instance%s\n", time.Now().Format("15:04:05.000"), service, len(list), plural(len(list)))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, in := range list {
		extra := []string{fmt.Sprintf("weight=%d", max(in.Weight, 1))}
		if len(in.Tags) > 0 {
			extra = append(extra, "tags="+strings.Join(in.Tags, ","))
		}
		for _, k := range slices.Sorted(maps.Keys(in.Meta)) {
			extra = append(extra, k+"="+in.Meta[k])
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", in.ID, in.Addr, strings.Join(extra, " "))
	}
	tw.Flush()
	e.stdout.Write([]byte(b.String()))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
