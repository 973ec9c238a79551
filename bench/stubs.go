package main

import "context"

func (h *harness) tlsScenario(ctx context.Context, cs []*contender) {}
