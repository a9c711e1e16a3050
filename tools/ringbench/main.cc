// ringbench — SMTP load generator (`send`) and counting, verifying sink
// (`sink`), built on ringrelay's own reactor. See `ringbench --help` and
// docs/ringbench.md.
#include <sys/resource.h>

#include <cstdio>
#include <string_view>

#include "options.hh"
#include "send.hh"
#include "sink.hh"

namespace {

// Thousands of connections need thousands of descriptors: take the hard
// limit instead of the usual soft 1024.
void raise_descriptor_limit() {
  rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ringrelay::ringbench;
  raise_descriptor_limit();
  std::string_view cmd = argc > 1 ? argv[1] : "";
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(main_help, stdout);
    return 0;
  }
  if (cmd == "send") {
    send_options opt;
    bool help = false;
    std::string err = parse_send(argc - 2, argv + 2, opt, help);
    if (help) {
      std::fputs(send_help, stdout);
      return 0;
    }
    if (!err.empty()) {
      std::fprintf(stderr, "ringbench send: %s (see ringbench send --help)\n", err.c_str());
      return 2;
    }
    return run_send(opt);
  }
  if (cmd == "sink") {
    sink_options opt;
    bool help = false;
    std::string err = parse_sink(argc - 2, argv + 2, opt, help);
    if (help) {
      std::fputs(sink_help, stdout);
      return 0;
    }
    if (!err.empty()) {
      std::fprintf(stderr, "ringbench sink: %s (see ringbench sink --help)\n", err.c_str());
      return 2;
    }
    return run_sink(opt);
  }
  if (cmd.empty())
    std::fputs(
        "ringbench: say what to run: ringbench send ... or ringbench sink ... (see ringbench "
        "--help)\n",
        stderr);
  else
    std::fprintf(stderr,
                 "ringbench: unknown command '%.*s': use send or sink (see ringbench --help)\n",
                 static_cast<int>(cmd.size()), cmd.data());
  return 2;
}
