package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"google.golang.org/grpc"

	rmtv1 "rmt/gen/go/rmt/v1"
)

// coordinatorVerb runs `run` (StartRun, then WatchRun until the run ends), `status`
// (GetRunStatus) or `workers` (ListWorkers) on the CoordinatorService.
func coordinatorVerb(g globals, cc *grpc.ClientConn, verb string, args []string) int {
	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	config := fs.String("config", "", "run config (YAML or JSON), sent as it is: the coordinator parses it")
	steps := fs.Int64("steps", 0, "override train.steps when > 0")
	outDir := fs.String("out-dir", "", "override run.out_dir (a path the services can write)")
	method := fs.String("method", "", "override method: ntp, rpt, rmt, rmt-no-dtb, ...")
	runID := fs.String("run-id", "", "name of a new run, or the run for status (default: generated / the active one)")
	_ = fs.Parse(args)
	client := rmtv1.NewCoordinatorServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()

	switch verb {
	case "status":
		s, err := client.GetRunStatus(ctx, &rmtv1.RunStatusRequest{RunId: *runID})
		if err != nil {
			return printRPCError(err)
		}
		fmt.Println(statusLine(s))
		return 0
	case "workers":
		res, err := client.ListWorkers(ctx, &rmtv1.ListWorkersRequest{})
		if err != nil {
			return printRPCError(err)
		}
		for _, w := range res.GetWorkers() {
			busy := "idle"
			if w.GetBusy() {
				busy = "busy"
			}
			fmt.Printf("%s %s v%d %s seen %.1f s ago\n", w.GetWorkerId(), w.GetAddress(), w.GetWeightVersion(), busy, w.GetLastSeenS())
		}
		return 0
	}
	if *config == "" {
		fmt.Fprintln(os.Stderr, "run: -config is required")
		return exitError
	}
	text, err := os.ReadFile(*config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "-config: %v\n", err)
		return exitError
	}
	start, err := client.StartRun(ctx, &rmtv1.StartRunRequest{
		Config: string(text), Method: *method, Steps: *steps, OutDir: *outDir, RunId: *runID,
	})
	if err != nil {
		return printRPCError(err)
	}
	fmt.Fprintf(os.Stderr, "started %s (%s, %d steps)\n", start.GetRunId(), start.GetMethod(), start.GetTotalSteps())
	last, err := watch(g, client, start)
	if err != nil {
		return printRPCError(err)
	}
	if code := printJSON(summary(last)); code != 0 {
		return code
	}
	if last.GetState() != rmtv1.RunState_RUN_STATE_DONE {
		return exitRunNotDone
	}
	return 0
}

// watch prints a status line per update until the stream ends with the run. On Ctrl-C it asks
// the coordinator to stop the run after its step in flight (with a checkpoint: the same StartRun
// later resumes it) and returns the status StopRun answers.
func watch(g globals, client rmtv1.CoordinatorServiceClient, start *rmtv1.RunStatus) (*rmtv1.RunStatus, error) {
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt)
	defer signal.Stop(interrupted)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.WatchRun(ctx, &rmtv1.RunStatusRequest{RunId: start.GetRunId()})
	if err != nil {
		return nil, err
	}
	updates := make(chan *rmtv1.RunStatus)
	ended := make(chan error, 1)
	go func() {
		for {
			s, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			select {
			case updates <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	last := start
	for {
		select {
		case s := <-updates:
			fmt.Fprintln(os.Stderr, statusLine(s))
			last = s
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return last, nil
			}
			return nil, err
		case <-interrupted:
			fmt.Fprintln(os.Stderr, "stopping after the step in flight ...")
			stopCtx, stopCancel := context.WithTimeout(context.Background(), g.timeout)
			defer stopCancel()
			s, err := client.StopRun(stopCtx, &rmtv1.StopRunRequest{RunId: start.GetRunId()})
			if err != nil {
				return nil, err
			}
			fmt.Fprintln(os.Stderr, statusLine(s))
			return s, nil
		}
	}
}

func stateName(s rmtv1.RunState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STATE_"))
}

// statusLine is one line per status, as `rmt status` and the Python client print it; metrics is
// empty until the first step is done.
func statusLine(s *rmtv1.RunStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s step %d/%d %s B=%d", s.GetRunId(), s.GetStep(), s.GetTotalSteps(), stateName(s.GetState()), s.GetBudget())
	for _, k := range []string{"critic/score/mean", "response_length/mean"} {
		if v, ok := s.GetMetrics()[k]; ok {
			fmt.Fprintf(&b, " %s=%.4g", k, v)
		} else {
			fmt.Fprintf(&b, " %s=-", k)
		}
	}
	fmt.Fprintf(&b, " workers=%d", s.GetWorkers())
	if s.GetError() != "" {
		fmt.Fprintf(&b, " error: %s", s.GetError())
	}
	return b.String()
}

func summary(s *rmtv1.RunStatus) map[string]interface{} {
	metrics := s.GetMetrics()
	if metrics == nil {
		metrics = map[string]float64{}
	}
	var runErr interface{}
	if s.GetError() != "" {
		runErr = s.GetError()
	}
	return map[string]interface{}{
		"run_id": s.GetRunId(), "state": stateName(s.GetState()), "method": s.GetMethod(),
		"step": s.GetStep(), "total_steps": s.GetTotalSteps(), "out_dir": s.GetOutDir(),
		"elapsed_s": s.GetElapsedS(), "error": runErr, "metrics": metrics,
	}
}
