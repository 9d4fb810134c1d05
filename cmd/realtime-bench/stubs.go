package main

func cmdReport(args []string) error { return nil }
