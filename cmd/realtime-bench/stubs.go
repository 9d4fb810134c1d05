package main

import "context"

func cmdBandwidth(ctx context.Context, args []string) error { return nil }
func cmdSoak(ctx context.Context, args []string) error      { return nil }
func cmdFault(ctx context.Context, args []string) error     { return nil }
func cmdReport(args []string) error                         { return nil }
