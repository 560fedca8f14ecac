// Command switchyard runs switchyard's PostgreSQL proxy (switchyard proxy),
// shows a cluster's servers as switchyard sees them (switchyard status), and
// runs a local PostgreSQL primary with lagging streaming replicas for
// development (switchyard lab up), a demonstration of switchyard's routing
// on such a cluster (switchyard demo) and side-by-side comparisons
// (switchyard compare).
//
// Usage:
//
//	switchyard lab up [--replicas N] [--lag DURATION] [--port P] [--dir DIR] [--status ADDR]
//	switchyard demo
//	switchyard compare [flags]
//	switchyard proxy --primary URL [--replica URL ...] [flags]
//	switchyard status --primary URL [--replica URL ...] | --connect URL | --admin ADDR [--watch]
//	switchyard help [COMMAND]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `switchyard: PostgreSQL read replicas without stale reads.

Usage:
  switchyard lab up [flags]   start a local primary with streaming replicas
  switchyard demo             run a mixed workload through switchyard on a throwaway lab
  switchyard compare [flags]  one workload through a naive, a sticky and switchyard's router
  switchyard proxy [flags]    serve the PostgreSQL protocol: any language's clients get switchyard's routing
  switchyard status [flags]   each server's role, state, lag and position, once or --watch
  switchyard help [command]   show help for a command

Run "switchyard help COMMAND" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a command-line mistake: one line, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(*usageError)):
		fmt.Fprintln(stderr, "switchyard:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "switchyard:", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErrorf("no command given (try \"switchyard help\")")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return dispatch(ctx, []string{rest[0], "--help"}, stdout, stderr)
	case "lab":
		return labCommand(ctx, rest, stdout, stderr)
	case "demo":
		return demoCommand(ctx, rest, stdout, stderr)
	case "compare":
		return compareCommand(ctx, rest, stdout, stderr)
	case "proxy":
		return proxyCommand(ctx, rest, stdout, stderr)
	case "status":
		return statusCommand(ctx, rest, stdout, stderr)
	default:
		return usageErrorf("unknown command %q (try \"switchyard help\")", cmd)
	}
}

// parseFlags parses args into fs. Help goes to stdout; a mistake becomes
// one line naming the command, for exit status 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return flag.ErrHelp
		}
		return usageErrorf("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
