package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/gateway"
	"github.com/shoalrpc/shoal/httpstatus"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
)

// Exit statuses, as `shoal help` lists them.
const (
	exitOK              = 0
	exitServiceError    = 1
	exitUsage           = 2
	exitUnknown         = 3
	exitBadRequest      = 4
	exitUnavailable     = 5
	exitDeadline        = 6
	exitUnauthenticated = 7
	exitInternal        = 8
	exitNotServing      = 9
)

// errHelp ends a command that printed its usage on request (-h).
var errHelp = errors.New("help requested")

// usageError is a misuse of the command: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitError carries its own exit status and message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// codeOfStatus maps a status name (gateway.StatusOf) to an exit status.
func codeOfStatus(status string) int {
	switch status {
	case protocol.StatusOK.String():
		return exitOK
	case protocol.StatusServiceError.String():
		return exitServiceError
	case protocol.StatusUnknownService.String(), protocol.StatusUnknownMethod.String():
		return exitUnknown
	case protocol.StatusBadRequest.String(), protocol.StatusTooLarge.String():
		return exitBadRequest
	case httpstatus.NoInstances, httpstatus.Unavailable, protocol.StatusShuttingDown.String(),
		protocol.StatusOverloaded.String(), protocol.StatusRefused.String():
		return exitUnavailable
	case httpstatus.Deadline, httpstatus.Canceled:
		return exitDeadline
	case protocol.StatusUnauthenticated.String():
		return exitUnauthenticated
	}
	return exitInternal
}

// describeError returns the exit status for err and the line to print
// after "shoal: ": the error's kind, then what it says, without the kind
// said twice: "service error: divide by zero".
func describeError(err error) (int, string) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.msg
	}
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, naming.ErrBadAddress) {
		return exitUsage, err.Error()
	}
	status := gateway.StatusOf(err)
	var se *consumer.ServiceError
	if errors.As(err, &se) {
		return exitServiceError, status + ": " + se.Message
	}
	// The consumer's errors say "shoal: <kind>" inside their text: say
	// "shoal" and the kind once, in front.
	msg := strings.ReplaceAll(err.Error(), "shoal: ", "")
	msg = strings.TrimPrefix(msg, status+": ")
	return codeOfStatus(status), status + ": " + msg
}
