// ringbench/send — `ringbench send`: the SMTP load generator.
//
// One event loop per thread (reactor::loop, its own io_uring), each with its
// share of the connections; threads share only the immutable prepared
// messages and a few atomics (the message budget, stop flags, progress
// counters). Per connection: connect, greeting, EHLO, optional AUTH, then
// messages back to back, with PIPELINING when asked and offered. The main
// thread paces the run, prints progress and the summary.
//
// Main thread: `run_send` only. Errors: setup problems are printed and give
// exit status 1; nothing throws out of `run_send`.
#pragma once

#include "options.hh"

namespace ringrelay::ringbench {

// Runs the load as `opt` says; returns the process exit status.
int run_send(const send_options& opt);

}  // namespace ringrelay::ringbench
