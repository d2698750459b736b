// Package batchwriter coalesces frames written by many goroutines into few
// write syscalls on one connection.
//
// There is no writer goroutine: the goroutine that finds the queue idle
// becomes the flusher. It first yields the processor once, so that goroutines
// already runnable (handlers about to reply, callers about to send) can queue
// their frames behind its own; then it writes everything queued, including
// what others append while its write is in the kernel. With nothing else
// runnable the yield returns at once. A flusher that has written many rounds
// hands the rest to a short-lived goroutine, so no caller is held writing for
// others for long.
package batchwriter

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// ErrQueueFull is the writer's error once more bytes were queued than its
// limit: the peer is not reading fast enough, or at all.
var ErrQueueFull = errors.New("batchwriter: write queue full")

const (
	// maxRounds is how many writes a caller does for others before it hands
	// the flushing to a goroutine of its own.
	maxRounds = 4
	// keepCap is the largest batch buffer kept for reuse.
	keepCap = 1 << 20
)

// Writer queues frames and writes them in batches. It is safe for concurrent use.
type Writer struct {
	w         io.Writer
	onWritten func(counted int) // told how many counted frames left the queue
	limit     int               // most bytes queued; 0: no limit

	mu       sync.Mutex
	queue    []byte // frames waiting to be written
	spare    []byte // the last written batch, reused as the next queue
	counted  int    // counted frames in queue
	flushing bool   // a goroutine is writing
	err      error  // sticky: set by the first failed write or by Fail
}

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

// Write queues a copy of frame; frame may be reused when Write returns. The
// frame is written by this goroutine or by one already writing. Write returns
// the writer's error once it has failed; a counted frame refused that way is
// reported to onWritten before Write returns.
func (w *Writer) Write(frame []byte, counted bool) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		if counted {
			w.onWritten(1)
		}
		return err
	}
	if w.limit > 0 && len(w.queue)+len(frame) > w.limit && len(w.queue) > 0 {
		w.err = fmt.Errorf("%w: %d bytes waiting", ErrQueueFull, len(w.queue))
		err := w.err
		dropped := 0
		if !w.flushing {
			dropped, w.queue, w.counted = w.counted, nil, 0
		}
		w.mu.Unlock()
		if counted {
			dropped++
		}
		if dropped > 0 {
			w.onWritten(dropped)
		}
		return err
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
	w.mu.Unlock()
	runtime.Gosched() // let runnable writers join this batch
	w.mu.Lock()
	return w.flush(maxRounds)
}

// flush writes queued batches until the queue is empty, or hands the rest to
// a new goroutine after rounds batches (rounds < 0: no limit). It is called
// with w.mu held and flushing set, and returns with w.mu released.
func (w *Writer) flush(rounds int) error {
	for len(w.queue) > 0 && w.err == nil {
		if rounds == 0 {
			w.mu.Unlock()
			go func() {
				w.mu.Lock()
				_ = w.flush(-1)
			}()
			return nil
		}
		rounds--
		batch, n := w.queue, w.counted
		w.queue, w.spare, w.counted = w.spare[:0], nil, 0
		w.mu.Unlock()

		_, err := w.w.Write(batch)
		w.onWritten(n)

		w.mu.Lock()
		if cap(batch) <= keepCap {
			w.spare = batch[:0]
		}
		if err != nil && w.err == nil {
			w.err = err
		}
	}
	dropped := 0
	if w.err != nil {
		dropped = w.counted
		w.queue, w.counted = w.queue[:0], 0
	}
	err := w.err
	w.flushing = false
	w.mu.Unlock()
	if dropped > 0 {
		w.onWritten(dropped)
	}
	return err
}

// Fail makes every later Write fail with err and drops the frames still
// queued, reporting the counted ones. A flush in progress finishes its
// current write.
func (w *Writer) Fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	dropped := 0
	if !w.flushing {
		dropped = w.counted
		w.queue, w.counted = nil, 0
		w.spare = nil
	}
	w.mu.Unlock()
	if dropped > 0 {
		w.onWritten(dropped)
	}
}
