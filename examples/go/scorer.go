package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	rmtv1 "rmt/gen/go/rmt/v1"
)

// scorerVerb runs `tokenize` (text to ids, and the ids back to text) or `detokenize` (ids to text)
// on the ScorerService and prints the result as JSON on stdout.
func scorerVerb(g globals, cc *grpc.ClientConn, verb string, args []string) int {
	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	tokenizer := fs.String("tokenizer", "", "tokenizer folder (a checkpoint folder works) as the service sees it; empty: the service's -tokenizer")
	text := fs.String("text", "", "text to tokenize")
	ids := fs.String("ids", "", "comma-separated token ids to detokenize")
	_ = fs.Parse(args)
	client := rmtv1.NewScorerServiceClient(cc)
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), g.timeout)
	}

	if verb == "tokenize" {
		ctx, cancel := call()
		defer cancel()
		tok, err := client.Tokenize(ctx, &rmtv1.TokenizeRequest{Tokenizer: *tokenizer, Text: *text})
		if err != nil {
			return printRPCError(err)
		}
		de, err := client.Detokenize(ctx, &rmtv1.DetokenizeRequest{Tokenizer: *tokenizer, Ids: tok.GetIds()})
		if err != nil {
			return printRPCError(err)
		}
		return printJSON(map[string]interface{}{"ids": nonNil(tok.GetIds()), "text": de.GetText()})
	}
	parsed, err := parseIDs(*ids)
	if err != nil {
		fmt.Fprintf(os.Stderr, "-ids: %v\n", err)
		return exitError
	}
	ctx, cancel := call()
	defer cancel()
	de, err := client.Detokenize(ctx, &rmtv1.DetokenizeRequest{Tokenizer: *tokenizer, Ids: parsed})
	if err != nil {
		return printRPCError(err)
	}
	return printJSON(map[string]interface{}{"text": de.GetText()})
}

// parseIDs reads "1,2,3" as int32 ids; whether each is in the vocabulary is the service's to say.
func parseIDs(s string) ([]int32, error) {
	var out []int32
	for i, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("item %d: %q is not a 32-bit integer", i, f)
		}
		out = append(out, int32(v))
	}
	return out, nil
}

// nonNil makes an empty id list print as [] rather than null.
func nonNil(ids []int32) []int32 {
	if ids == nil {
		return []int32{}
	}
	return ids
}

func printJSON(v interface{}) int {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitError
	}
	return 0
}
