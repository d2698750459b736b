package batchwriter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an io.Writer that counts its writes.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes++
	return r.buf.Write(p)
}

func TestConcurrentFramesArriveWholeAndCounted(t *testing.T) {
	rec := &recorder{}
	var reported atomic.Int64
	w := New(rec, func(n int) { reported.Add(int64(n)) }, 0)
	const goroutines, frames = 16, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			frame := bytes.Repeat([]byte{byte('a' + g)}, 32)
			for range frames {
				if err := w.Write(frame, true); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A hand-off goroutine may still be flushing: wait for the counts, which
	// are reported after each write.
	for reported.Load() != goroutines*frames {
		runtime.Gosched()
		w.mu.Lock()
		idle := !w.flushing && len(w.queue) == 0
		w.mu.Unlock()
		if idle && reported.Load() != goroutines*frames {
			t.Fatalf("reported %d counted frames, want %d", reported.Load(), goroutines*frames)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	data := rec.buf.Bytes()
	if len(data) != goroutines*frames*32 {
		t.Fatalf("wrote %d bytes", len(data))
	}
	for i := 0; i < len(data); i += 32 {
		if !bytes.Equal(data[i:i+32], bytes.Repeat(data[i:i+1], 32)) {
			t.Fatalf("frame at %d was interleaved", i)
		}
	}
}

// gateWriter records every Write; the first one blocks until release is
// closed, after telling entered, as a connection whose kernel buffer is full.
type gateWriter struct {
	entered chan struct{}
	release chan struct{}

	mu     sync.Mutex
	writes [][]byte
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	first := len(g.writes) == 0
	g.writes = append(g.writes, bytes.Clone(p))
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	return len(p), nil
}

// TestFramesQueuedBehindAWriteAreCoalesced: while one write is in the
// kernel, frames from other goroutines queue, and once it returns they go
// out together, in fewer writes than frames. What the test sees is only
// what the writer underneath sees: the number of writes and their bytes.
func TestFramesQueuedBehindAWriteAreCoalesced(t *testing.T) {
	const frames, size = 16, 32
	g := &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
	var reported atomic.Int64
	allReported := make(chan struct{})
	w := New(g, func(n int) {
		if reported.Add(int64(n)) == frames+1 {
			close(allReported)
		}
	}, 0)
	first := make(chan error, 1)
	go func() { first <- w.Write(bytes.Repeat([]byte{'0'}, size), true) }()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first frame was not written within 10s")
	}
	// The first write is blocked: every other frame must queue behind it.
	var wg sync.WaitGroup
	for i := range frames {
		wg.Go(func() {
			if err := w.Write(bytes.Repeat([]byte{byte('a' + i)}, size), true); err != nil {
				t.Error(err)
			}
		})
	}
	queued := make(chan struct{})
	go func() { wg.Wait(); close(queued) }()
	select {
	case <-queued:
	case <-time.After(10 * time.Second):
		close(g.release)
		t.Fatal("writers were still blocked 10s after a write to the connection stalled: a caller waits on the network")
	}
	close(g.release)
	select {
	case <-allReported:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d frames reported written 10s after the stalled write returned", reported.Load(), frames+1)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var data []byte
	for _, p := range g.writes {
		data = append(data, p...)
	}
	if len(data) != (frames+1)*size {
		t.Fatalf("%d bytes written, want %d", len(data), (frames+1)*size)
	}
	seen := map[byte]bool{}
	for i := 0; i < len(data); i += size {
		if !bytes.Equal(data[i:i+size], bytes.Repeat(data[i:i+1], size)) {
			t.Fatalf("frame at %d was interleaved", i)
		}
		seen[data[i]] = true
	}
	if len(seen) != frames+1 {
		t.Fatalf("%d distinct frames written, want %d", len(seen), frames+1)
	}
	if later := len(g.writes) - 1; later >= frames {
		t.Fatalf("%d frames queued behind a stalled write went out in %d writes: not coalesced", frames, later)
	}
	t.Logf("%d frames queued behind a stalled write went out in %d write(s)", frames, len(g.writes)-1)
}

func TestFailedWriterReportsEveryCountedFrameOnce(t *testing.T) {
	boom := errors.New("boom")
	rec := &recorder{fail: boom}
	var reported atomic.Int64
	w := New(rec, func(n int) { reported.Add(int64(n)) }, 0)
	if err := w.Write([]byte("x"), true); !errors.Is(err, boom) {
		t.Fatalf("first write: %v", err)
	}
	if err := w.Write([]byte("y"), true); !errors.Is(err, boom) {
		t.Fatalf("second write: %v", err)
	}
	if err := w.Write([]byte("z"), false); !errors.Is(err, boom) {
		t.Fatalf("uncounted write: %v", err)
	}
	if got := reported.Load(); got != 2 {
		t.Fatalf("reported %d counted frames, want 2", got)
	}
}

func TestFailRefusesLaterWrites(t *testing.T) {
	rec := &recorder{}
	w := New(rec, nil, 0)
	closed := errors.New("closed")
	w.Fail(closed)
	if err := w.Write([]byte("x"), false); !errors.Is(err, closed) {
		t.Fatalf("write after Fail: %v", err)
	}
	if rec.writes != 0 {
		t.Fatalf("%d writes after Fail", rec.writes)
	}
}

// blockedWriter blocks every Write until released, as a peer that does not read.
type blockedWriter struct{ release chan struct{} }

func (b blockedWriter) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

func TestQueueLimitBoundsWhatAStalledPeerHolds(t *testing.T) {
	bw := blockedWriter{release: make(chan struct{})}
	var reported atomic.Int64
	w := New(bw, func(n int) { reported.Add(int64(n)) }, 1000)
	flusher := make(chan error, 1)
	go func() { flusher <- w.Write(make([]byte, 10), true) }() // blocks in Write
	for {
		w.mu.Lock()
		inKernel := w.flushing && len(w.queue) == 0 && w.counted == 0
		w.mu.Unlock()
		if inKernel {
			break
		}
		runtime.Gosched()
	}
	var err error
	frames := 0
	for err == nil && frames < 1000 {
		err = w.Write(make([]byte, 100), true)
		frames++
	}
	if !errors.Is(err, ErrQueueFull) || frames > 11 {
		t.Fatalf("after %d frames of 100 bytes: %v, want ErrQueueFull within the 1000-byte limit", frames, err)
	}
	close(bw.release)
	<-flusher
	if got := reported.Load(); got != int64(frames)+1 {
		t.Fatalf("reported %d counted frames, want %d", got, frames+1)
	}
}

func TestWithdrawnFramesAreNeverWritten(t *testing.T) {
	bw := blockedWriter{release: make(chan struct{})}
	rec := &recorder{}
	w := NewAsync(io.MultiWriter(bw, rec), nil, 0, Async{})
	ran := make(chan struct{})
	go func() { defer close(ran); w.Run() }()
	var first, a, b, c Mark
	if err := w.Queue([]byte("first"), &first); err != nil {
		t.Fatal(err)
	}
	for w.Taken() < first.End() { // the flusher is blocked writing "first"
		runtime.Gosched()
	}
	for _, f := range []struct {
		data string
		mark *Mark
	}{{"aaa", &a}, {"bbb", &b}, {"ccc", &c}} {
		if err := w.Queue([]byte(f.data), f.mark); err != nil {
			t.Fatal(err)
		}
	}
	if w.Withdraw(first) {
		t.Error("Withdraw took back a frame the flusher was writing")
	}
	// Out of queue order, and twice: both must be handled.
	if !w.Withdraw(c) || !w.Withdraw(a) || !w.Withdraw(a) {
		t.Fatal("Withdraw refused a frame still queued")
	}
	if !a.NotTaken(w.Taken()) {
		t.Error("a withdrawn frame counts as taken")
	}
	close(bw.release)
	for w.Taken() < c.End() {
		runtime.Gosched()
	}
	w.Fail(errors.New("done"))
	<-ran
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.buf.String(); got != "firstbbb" {
		t.Fatalf("wrote %q, want %q", got, "firstbbb")
	}
}

func TestAsyncWriteNeverBlocksAndAFailedWriteIsReported(t *testing.T) {
	bw := blockedWriter{release: make(chan struct{})}
	boom := errors.New("boom")
	failing := writerFunc(func(p []byte) (int, error) { <-bw.release; return 0, boom })
	reported := make(chan error, 1)
	w := NewAsync(failing, nil, 0, Async{OnError: func(err error) { reported <- err }})
	ran := make(chan struct{})
	go func() { defer close(ran); w.Run() }()
	for range 100 { // the writer is stuck: Write still returns at once
		if err := w.Write([]byte("x"), false); err != nil {
			t.Fatal(err)
		}
	}
	close(bw.release)
	if err := <-reported; !errors.Is(err, boom) {
		t.Fatalf("onError got %v", err)
	}
	<-ran // Run returns once the writer failed
	if err := w.Write([]byte("y"), false); !errors.Is(err, boom) {
		t.Fatalf("write after the failure: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestATryWriteCutShortIsFinishedByRun(t *testing.T) {
	rec := &recorder{}
	var tries, partial atomic.Int64
	try := func(p []byte) (int, error) {
		tries.Add(1)
		if partial.Load() == 0 && len(p) > 4 { // the first big batch: half now, the rest would block
			partial.Add(1)
			n, _ := rec.Write(p[:len(p)/2])
			return n, ErrWouldBlock
		}
		return rec.Write(p)
	}
	w := NewAsync(rec, nil, 0, Async{TryWrite: try})
	ran := make(chan struct{})
	go func() { defer close(ran); w.Run() }()
	var m Mark
	if err := w.Queue([]byte("0123456789"), &m); err != nil {
		t.Fatal(err)
	}
	for w.Taken() < m.End() {
		runtime.Gosched()
	}
	for i := range 50 {
		if err := w.Write([]byte{byte('a' + i%26)}, false); err != nil {
			t.Fatal(err)
		}
	}
	want := "0123456789" + "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx"
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("Run never finished the batch TryWrite cut short")
		}
		rec.mu.Lock()
		got := rec.buf.String()
		rec.mu.Unlock()
		if got == want {
			break
		}
		if len(got) >= len(want) {
			t.Fatalf("wrote %q, want %q", got, want)
		}
		runtime.Gosched()
	}
	w.Fail(errors.New("done"))
	<-ran
	if tries.Load() == 0 || partial.Load() != 1 {
		t.Fatalf("TryWrite ran %d times, cut short %d times", tries.Load(), partial.Load())
	}
}

// TestQueueWaitWaitsForRoomInsteadOfFailing: with the queue at its limit
// behind a write that does not return, QueueWait waits rather than failing
// the writer; its context ending leaves the frame unqueued and the writer
// working; once the write returns, a waiting QueueWait gets its frame
// queued and written.
func TestQueueWaitWaitsForRoomInsteadOfFailing(t *testing.T) {
	bw := blockedWriter{release: make(chan struct{})}
	rec := &recorder{}
	w := NewAsync(io.MultiWriter(bw, rec), nil, 1000, Async{})
	done := make(chan struct{})
	go func() { defer close(done); w.Run() }()
	stopped := false
	defer func() {
		if !stopped {
			close(bw.release)
			w.Fail(errors.New("test over"))
			<-done
		}
	}()

	var m Mark
	if err := w.QueueWait(context.Background(), make([]byte, 10), &m); err != nil {
		t.Fatal(err)
	}
	for w.Taken() < m.End() { // Run has the first frame and is blocked writing it
		runtime.Gosched()
	}
	for i := 0; i < 10; i++ { // the queue is now at its limit
		if err := w.QueueWait(context.Background(), make([]byte, 100), &m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.QueueWait(ctx, make([]byte, 100), &m); !errors.Is(err, ErrNoRoom) || !errors.Is(err, context.Canceled) {
		t.Fatalf("QueueWait on a full queue with an ended context: %v, want ErrNoRoom and context.Canceled", err)
	}

	queued := make(chan error, 1)
	last := make([]byte, 100)
	last[0] = 0xEE
	go func() { queued <- w.QueueWait(context.Background(), last, &m) }()
	select {
	case err := <-queued:
		t.Fatalf("QueueWait returned %v on a full queue, want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	stopped = true
	close(bw.release) // the peer reads again: Run takes the queue
	if err := <-queued; err != nil {
		t.Fatalf("QueueWait after room was made: %v", err)
	}
	for w.Taken() < m.End() { // every frame handed to the connection
		runtime.Gosched()
	}
	w.Fail(errors.New("test over")) // Run finishes its write, then returns
	<-done
	rec.mu.Lock()
	got := rec.buf.Len()
	rec.mu.Unlock()
	if want := 10 + 10*100 + 100; got != want {
		t.Fatalf("%d bytes written, want %d (every frame but the one whose context ended)", got, want)
	}
}

// burstSink counts what is written to it; the first Write after arm blocks
// until release is closed, after closing entered: a write in the kernel
// while many writers queue frames behind it.
type burstSink struct {
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
	written int
}

func (s *burstSink) arm() (entered, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entered, s.release = make(chan struct{}), make(chan struct{})
	return s.entered, s.release
}

func (s *burstSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.written += len(p)
	entered, release := s.entered, s.release
	s.entered, s.release = nil, nil
	s.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return len(p), nil
}

// TestLargeBatchesReuseTheirBuffers: a connection with a thousand streams
// queues a frame per stream behind each write, batches of more than 1 MiB;
// its writer reuses its batch buffers from one such burst to the next
// rather than allocate (and grow, copying) new ones each time.
func TestLargeBatchesReuseTheirBuffers(t *testing.T) {
	const frames, size = 1500, 1024
	frame := bytes.Repeat([]byte{'x'}, size)
	sink := &burstSink{}
	w := New(sink, nil, 0)
	burst := func() uint64 {
		entered, release := sink.arm()
		first := make(chan error, 1)
		go func() { first <- w.Write(frame, false) }()
		<-entered
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range frames {
			if err := w.Write(frame, false); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	burst() // the first burst grows the buffers
	for i := range 3 {
		if got := burst(); got > frames*size/8 {
			t.Fatalf("burst %d of %d frames of %d bytes allocated %d bytes: the batch buffers were not reused", i+2, frames, size, got)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if want := 4 * (frames + 1) * size; sink.written != want {
		t.Fatalf("%d bytes written, want %d", sink.written, want)
	}
}
