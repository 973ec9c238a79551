package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles starts the profiles the environment asks for (see the
// package comment); the returned func stops them and writes them out.
func startProfiles(stderr io.Writer) (stop func()) {
	var stops []func()
	if path := os.Getenv("MAILPROXY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "mailproxy: MAILPROXY_CPUPROFILE:", err)
		} else {
			stops = append(stops, func() {
				pprof.StopCPUProfile()
				f.Close()
			})
		}
	}
	if path := os.Getenv("MAILPROXY_MEMPROFILE"); path != "" {
		// Created now, written at exit: the program may have switched to
		// a user that cannot create it by then.
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(stderr, "mailproxy: MAILPROXY_MEMPROFILE:", err)
		} else {
			stops = append(stops, func() {
				runtime.GC() // the heap as of the last collection: make it now
				err := pprof.WriteHeapProfile(f)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					fmt.Fprintln(stderr, "mailproxy: MAILPROXY_MEMPROFILE:", err)
				}
			})
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
