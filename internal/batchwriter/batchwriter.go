// Package batchwriter coalesces frames written by many goroutines into few
// write syscalls on one connection.
//
// A Writer made by New has no goroutine of its own: the goroutine that finds
// the queue idle becomes the flusher. It first yields the processor once, so that goroutines
// already runnable (handlers about to reply, callers about to send) can queue
// their frames behind its own; then it writes everything queued, including
// what others append while its write is in the kernel. With nothing else
// runnable the yield returns at once. A flusher that has written many rounds
// hands the rest to a short-lived goroutine, so no caller is held writing for
// others for long.
//
// A Writer made by NewAsync never writes on the caller's goroutine: Run, on a
// goroutine of the owner's, is the only flusher, so Write returns at once
// whatever the peer does. A frame queued with Queue can be withdrawn until
// the flusher takes it, and Taken says which frames were handed to the
// connection: what a client needs to tell a call that was never sent from
// one that may have reached the server.
package batchwriter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
)

// ErrQueueFull is the writer's error once more bytes were queued than its
// limit: the peer is not reading fast enough, or at all.
var ErrQueueFull = errors.New("batchwriter: write queue full")

// ErrNoRoom is QueueWait's error when its context ended while it waited for
// room in the queue: the frame was not queued, and the writer goes on.
var ErrNoRoom = errors.New("batchwriter: no room in the write queue")

const (
	// maxRounds is how many writes a caller does for others before it hands
	// the flushing to a goroutine of its own.
	maxRounds = 4
	// keepCap is the largest batch buffer kept for reuse. A batch holds
	// what every writer of the connection queued during the write before
	// it: a frame per stream with a thousand streams, more than 1 MiB of
	// 1 KiB messages. A buffer too large to keep is allocated, and grown
	// by copying, for every such batch, which costs the connection more
	// CPU per frame (and its process more garbage collection) the more
	// writers it has. A connection keeps at most two such buffers.
	keepCap = 4 << 20
)

// Writer queues frames and writes them in batches. It is safe for concurrent use.
type Writer struct {
	w         io.Writer
	onWritten func(counted int) // told how many counted frames left the queue
	limit     int               // most bytes queued; 0: no limit

	mu       sync.Mutex
	queue    []byte        // frames waiting to be written
	spare    []byte        // the last written batch, reused as the next queue
	counted  int           // counted frames in queue
	flushing bool          // a goroutine is writing (async: Run has been woken or is writing)
	err      error         // sticky: set by the first failed write or by Fail
	room     chan struct{} // closed when the queue is taken or the writer fails; nil while nobody waits

	// Positions count every byte ever queued, withdrawn ones included.
	base      int64  // the position of queue[0]
	taken     int64  // bytes before this position were handed to w (or withdrawn)
	withdrawn []Mark // frames withdrawn from the queue, in queue order

	async       bool
	try         func([]byte) (int, error) // async: a caller's write that returns ErrWouldBlock rather than wait
	rest        []byte                    // async: what a TryWrite left of its batch, for Run to write first
	restCounted int                       // counted frames in rest
	handedOff   bool                      // async: Run is the flusher
	wake        chan struct{}             // async: tells Run it is the flusher, or that the writer failed
	onError     func(error)               // async: told once when a write fails
}

// Mark is where a frame queued by Queue lies in the stream of every byte the
// writer was given.
type Mark struct{ start, end int64 }

// New returns a Writer to w. After every write, failed or not, onWritten (if
// not nil) is told how many counted frames it carried; frames dropped because
// the writer failed are reported the same way, so each counted frame is
// reported exactly once. When more than limit bytes (limit > 0) wait to be
// written, the writer fails with ErrQueueFull: memory held for a peer that
// does not read stays bounded.
func New(w io.Writer, onWritten func(counted int), limit int) *Writer {
	if onWritten == nil {
		onWritten = func(int) {}
	}
	return &Writer{w: w, onWritten: onWritten, limit: limit}
}

// ErrWouldBlock is what an Async.TryWrite returns when it could not write all
// of its bytes promptly: the rest waits for Run.
var ErrWouldBlock = errors.New("batchwriter: write would block")

// Async configures a Writer made by NewAsync.
type Async struct {
	// OnError, if not nil, is told once when a write fails, after the
	// writer has failed.
	OnError func(error)
	// TryWrite, if not nil, lets the callers of Write flush as a New
	// Writer's do, batching with no goroutine switch, as long as their
	// writes complete promptly: it writes p, or as much of it as it can
	// without waiting long, and returns ErrWouldBlock with the count when
	// it stopped short; Run then writes the rest. Any other error fails the
	// writer. Without it, Run writes everything.
	TryWrite func(p []byte) (int, error)
}

// NewAsync is New for a Writer whose Write and Queue never wait on w: the
// blocking writes are Run's, which the owner must run on a goroutine of its
// own. Run returns once the writer has failed, by a write error or by Fail;
// a write in progress then must be ended by closing the connection under w.
func NewAsync(w io.Writer, onWritten func(counted int), limit int, a Async) *Writer {
	bw := New(w, onWritten, limit)
	bw.async, bw.onError, bw.try, bw.wake = true, a.OnError, a.TryWrite, make(chan struct{}, 1)
	return bw
}

// Write queues a copy of frame; frame may be reused when Write returns. The
// frame is written by this goroutine or by one already writing. Write returns
// the writer's error once it has failed; a counted frame refused that way is
// reported to onWritten before Write returns.
func (w *Writer) Write(frame []byte, counted bool) error {
	return w.queueFrame(context.Background(), false, frame, counted, nil)
}

// Queue is Write for an uncounted frame that also stores where the frame lies
// in *mark, for Withdraw. *mark is set while the writer's lock is held, so
// whoever later calls Fail or Taken sees it; it is left untouched when Queue
// fails (the frame was not queued).
func (w *Writer) Queue(frame []byte, mark *Mark) error {
	return w.queueFrame(context.Background(), false, frame, false, mark)
}

// QueueWait is Queue for a caller that would rather wait than fail the
// writer: while frame would take the queue past the limit, it waits until
// the flusher takes the queue, the writer fails or ctx ends. If ctx ends
// first it returns ErrNoRoom wrapping ctx's error; the frame was not queued
// and the writer goes on. A frame larger than the limit alone is queued
// once the queue is empty, as Queue does.
func (w *Writer) QueueWait(ctx context.Context, frame []byte, mark *Mark) error {
	return w.queueFrame(ctx, true, frame, false, mark)
}

// full reports whether frame would take the queue past the limit. w.mu
// must be held.
func (w *Writer) full(frame []byte) bool {
	return w.limit > 0 && len(w.queue)+len(frame) > w.limit && len(w.queue) > 0
}

// freed wakes the callers of QueueWait waiting for room. w.mu must be held.
func (w *Writer) freed() {
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
}

// queueFrame queues frame; with wait, it waits for room (until ctx ends)
// instead of failing the writer when the queue is full.
func (w *Writer) queueFrame(ctx context.Context, wait bool, frame []byte, counted bool, mark *Mark) error {
	w.mu.Lock()
	for wait && w.err == nil && w.full(frame) {
		// A full queue always has a flusher (or the writer has failed):
		// it takes the queue, or fails, and closes room.
		if w.room == nil {
			w.room = make(chan struct{})
		}
		room := w.room
		w.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNoRoom, ctx.Err())
		}
		w.mu.Lock()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		if counted {
			w.onWritten(1)
		}
		return err
	}
	if w.full(frame) {
		w.err = fmt.Errorf("%w: %d bytes waiting", ErrQueueFull, len(w.queue))
		w.freed()
		err := w.err
		dropped := 0
		if !w.flushing {
			dropped = w.drop()
		}
		w.mu.Unlock()
		w.signal()
		if counted {
			dropped++
		}
		if dropped > 0 {
			w.onWritten(dropped)
		}
		return err
	}
	if mark != nil {
		start := w.base + int64(len(w.queue))
		*mark = Mark{start, start + int64(len(frame))}
	}
	w.queue = append(w.queue, frame...)
	if counted {
		w.counted++
	}
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	if w.async && w.try == nil {
		w.handedOff = true
		w.mu.Unlock()
		w.signal()
		return nil
	}
	w.mu.Unlock()
	runtime.Gosched() // let runnable writers join this batch
	w.mu.Lock()
	return w.flush(maxRounds, false)
}

// signal wakes Run, if the writer is async and Run is not already due to wake.
func (w *Writer) signal() {
	if w.async {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// drop empties the queue of a failed writer and returns how many counted
// frames it held. w.mu must be held.
func (w *Writer) drop() int {
	dropped := w.counted + w.restCounted
	w.freed()
	w.base += int64(len(w.queue))
	w.queue, w.counted, w.withdrawn = nil, 0, nil
	w.rest, w.restCounted = nil, 0
	return dropped
}

// Withdraw takes a frame queued by Queue out of the queue, if the flusher has
// not taken it yet, and reports whether no byte of it was or will be handed
// to the connection (true also when the writer failed before taking it).
func (w *Writer) Withdraw(m Mark) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m.start < w.taken || m.end <= m.start {
		return false
	}
	if w.err == nil && m.start >= w.base {
		w.withdrawn = append(w.withdrawn, m)
	}
	return true
}

// Taken reports the position before which every queued byte was handed to
// the connection (or withdrawn): a frame whose Mark starts at or after it
// has not begun to be written.
func (w *Writer) Taken() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.taken
}

// End is the position just past the frame: Taken reaches it once the frame
// was handed to the connection.
func (m Mark) End() int64 { return m.end }

// NotTaken reports whether none of the frame at m was handed to the
// connection, given a position returned by Taken.
func (m Mark) NotTaken(taken int64) bool { return m.end > m.start && m.start >= taken }

// Run is an async writer's flusher: it writes what is queued, in batches,
// until the writer fails. See NewAsync.
func (w *Writer) Run() {
	for range w.wake {
		w.mu.Lock()
		if w.err != nil {
			break
		}
		if !w.handedOff { // a wake-up for Fail, already seen through
			w.mu.Unlock()
			continue
		}
		w.handedOff = false
		if err := w.flush(-1, true); err != nil {
			return
		}
	}
	dropped := w.drop()
	w.flushing = false
	w.mu.Unlock()
	if dropped > 0 {
		w.onWritten(dropped)
	}
}

// take hands the queue to the flusher as the next batch, without the frames
// withdrawn from it. w.mu must be held.
func (w *Writer) take() (batch []byte, counted int) {
	batch, counted = w.queue, w.counted
	w.base += int64(len(batch))
	w.taken = w.base
	w.queue, w.spare, w.counted = w.spare[:0], nil, 0
	w.freed()
	if len(w.withdrawn) > 0 {
		// Withdrawals come in any order; the batch is cut in queue order.
		slices.SortFunc(w.withdrawn, func(a, b Mark) int { return cmp.Compare(a.start, b.start) })
		start := w.base - int64(len(batch))
		kept := batch[:0]
		from := int64(0)
		for _, m := range w.withdrawn {
			if m.start-start < from {
				continue // withdrawn twice
			}
			kept = append(kept, batch[from:m.start-start]...)
			from = m.end - start
		}
		batch = append(kept, batch[from:]...)
		w.withdrawn = w.withdrawn[:0]
	}
	return batch, counted
}

// flush writes queued batches until the queue is empty, or hands the rest to
// another flusher after rounds batches (rounds < 0: no limit). It is called
// with w.mu held and flushing set, and returns with w.mu released. byRun says
// Run called it: its writes may block. An async writer's other flushers (the
// callers of Write, when it has a TryWrite) write with TryWrite, and hand
// what it could not write promptly to Run.
func (w *Writer) flush(rounds int, byRun bool) error {
	var failed error // this flush's write error
	for (len(w.rest) > 0 || len(w.queue) > 0) && w.err == nil {
		if rounds == 0 {
			w.handOff()
			return nil
		}
		rounds--
		var batch []byte
		var n int
		if len(w.rest) > 0 {
			batch, n, w.rest, w.restCounted = w.rest, w.restCounted, nil, 0
		} else {
			batch, n = w.take()
		}
		w.mu.Unlock()

		var err error
		if w.try != nil && !byRun {
			var written int
			if written, err = w.try(batch); errors.Is(err, ErrWouldBlock) {
				w.mu.Lock()
				w.rest, w.restCounted = batch[written:], n
				w.handOff()
				return nil
			}
		} else {
			_, err = w.w.Write(batch)
		}
		w.onWritten(n)

		w.mu.Lock()
		if cap(batch) <= keepCap {
			w.spare = batch[:0]
		}
		if err != nil && w.err == nil {
			w.err = err
			failed = err
		}
	}
	dropped := 0
	if w.err != nil {
		dropped = w.drop()
	}
	err := w.err
	w.flushing = false
	w.mu.Unlock()
	if dropped > 0 {
		w.onWritten(dropped)
	}
	if failed != nil && w.onError != nil {
		w.onError(failed)
	}
	return err
}

// handOff makes another goroutine the flusher: Run for an async writer, a
// new goroutine otherwise. It is called with w.mu held and flushing set, and
// releases w.mu.
func (w *Writer) handOff() {
	if w.async {
		w.handedOff = true
		w.mu.Unlock()
		w.signal()
		return
	}
	w.mu.Unlock()
	go func() {
		w.mu.Lock()
		_ = w.flush(-1, false)
	}()
}

// Fail makes every later Write fail with err and drops the frames still
// queued, reporting the counted ones. A flush in progress finishes its
// current write; an async writer's Run returns after it. Fail returns Taken
// as it was when the writer failed: no frame at or after that position will
// be handed to the connection.
func (w *Writer) Fail(err error) (taken int64) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.freed()
	dropped := 0
	if !w.flushing {
		dropped = w.drop()
		w.spare = nil
	}
	taken = w.taken
	w.mu.Unlock()
	w.signal()
	if dropped > 0 {
		w.onWritten(dropped)
	}
	return taken
}
