// ringbench/sink — `ringbench sink`: an SMTP server that counts, verifies
// and discards.
//
// One event loop per thread, each with its own SO_REUSEPORT listener, its
// provided-buffer ring for multishot recv, and its connections. Commands
// are answered in order and the replies of one loop turn leave in one send
// (PIPELINING). DATA bodies are walked in place by smtp::data_scanner (end
// of data across buffer boundaries) and body_verifier (the X-Ringbench-Sum
// check); BDAT chunks go to the verifier raw. Nothing is stored.
//
// Main thread: `run_sink` only. Errors: a listener that cannot be opened is
// printed with exit status 2; nothing throws out of `run_sink`.
#pragma once

#include "options.hh"

namespace ringrelay::ringbench {

// Serves until SIGINT/SIGTERM, --duration or --expect; returns the process
// exit status.
int run_sink(const sink_options& opt);

}  // namespace ringrelay::ringbench
