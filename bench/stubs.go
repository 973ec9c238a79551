package main

import "context"

func (h *harness) bulkScenario(ctx context.Context, cs []*contender) {}
func (h *harness) tlsScenario(ctx context.Context, cs []*contender)  {}
func (h *harness) idleScenario(ctx context.Context)                  {}
