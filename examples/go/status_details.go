package main

import (
	"fmt"
	"os"
	"sort"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// printRPCError prints a failed call as `CODE: message`, then what its google.rpc.Status details
// say: each BadRequest field violation (the request field at fault) and the ErrorInfo reason with
// its metadata. rmt's services attach both to every error (the grpc-status-details-bin trailer),
// so this is grpc-go's standard status.Details() and nothing rmt-specific. Returns the exit code.
func printRPCError(err error) int {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "%s: %s\n", codeName(st), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(os.Stderr, "  bad request: field %s: %s\n", v.GetField(), v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			fmt.Fprintf(os.Stderr, "  error info: %s (domain %s)%s\n", d.GetReason(), d.GetDomain(), sortedPairs(d.GetMetadata()))
		case error:
			// A detail whose type this program does not link in: say so rather than drop it.
			fmt.Fprintf(os.Stderr, "  detail not decoded: %v\n", d)
		default:
			fmt.Fprintf(os.Stderr, "  detail: %T\n", d)
		}
	}
	return exitError
}

// codeName is the code as grpc writes it in other languages (INVALID_ARGUMENT), not Go's
// CamelCase String() (InvalidArgument).
func codeName(st *status.Status) string {
	names := [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
		"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	if c := int(st.Code()); c >= 0 && c < len(names) {
		return names[c]
	}
	return fmt.Sprintf("CODE_%d", st.Code())
}

func sortedPairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%s", k, m[k])
	}
	return s
}
