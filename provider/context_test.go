package provider

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRequestContextWithoutDeadline(t *testing.T) {
	md := map[string]string{"k": "v"}
	ctx := newRequestContext(time.Time{}, md, nil)
	if _, ok := ctx.Deadline(); ok {
		t.Error("a deadline without one")
	}
	if ctx.Err() != nil || Metadata(ctx)["k"] != "v" || ctx.Value("other") != nil {
		t.Fatalf("fresh context: err %v, metadata %v", ctx.Err(), Metadata(ctx))
	}
	if Metadata(newRequestContext(time.Time{}, nil, nil)) != nil {
		t.Error("metadata without any sent")
	}
	done := ctx.Done()
	select {
	case <-done:
		t.Fatal("done before it was cancelled")
	default:
	}
	ctx.cancel()
	<-done
	if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), context.Canceled) {
		t.Fatalf("after cancel: err %v, cause %v", ctx.Err(), context.Cause(ctx))
	}
}

func TestRequestContextCancelledBeforeDone(t *testing.T) {
	ctx := newRequestContext(time.Now().Add(time.Hour), nil, nil)
	ctx.cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("err %v", ctx.Err())
	}
	<-ctx.Done() // made after the cancel: already closed
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("err after Done %v", ctx.Err())
	}
}

func TestRequestContextDeadlineWithoutDone(t *testing.T) {
	past := time.Now().Add(-time.Millisecond)
	ctx := newRequestContext(past, nil, nil)
	if d, ok := ctx.Deadline(); !ok || !d.Equal(past) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline exceeded", ctx.Err())
	}
	ctx.cancel() // the method returns: the error stays what it was
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err after cancel %v", ctx.Err())
	}
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err after Done %v", ctx.Err())
	}
}

func TestRequestContextDeadlineFiresOnceWaitedOn(t *testing.T) {
	ctx := newRequestContext(time.Now().Add(20*time.Millisecond), nil, nil)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline did not end the context")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v", ctx.Err())
	}
	ctx.cancel()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err after cancel %v", ctx.Err())
	}
}

// TestContextsDerivedFromARequestContext checks that derived contexts and
// context.AfterFunc follow a request context's cancellation, and that a
// derived context sees the request's metadata.
func TestContextsDerivedFromARequestContext(t *testing.T) {
	ctx := newRequestContext(time.Now().Add(time.Hour), map[string]string{"k": "v"}, nil)
	child, stopChild := context.WithTimeout(ctx, time.Hour)
	defer stopChild()
	want, _ := ctx.Deadline()
	if d, _ := child.Deadline(); !d.Equal(want) {
		t.Errorf("child deadline %v, want the request's", d)
	}
	if Metadata(child)["k"] != "v" {
		t.Error("the child lost the metadata")
	}
	called := make(chan struct{})
	context.AfterFunc(ctx, func() { close(called) })
	ctx.cancel()
	<-child.Done()
	<-called
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child err %v", child.Err())
	}
}
