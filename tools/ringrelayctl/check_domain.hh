// check_domain — `ringrelayctl check-domain DOMAIN`: would mail from DOMAIN
// pass the relay's sender verification, and is its SPF record fit to send
// through the relay? (SPEC.md §4, docs/ringrelayctl.md.)
//
// Runs the same dns::sender_check as MAIL FROM (the sender
// postmaster@DOMAIN), the MX targets' addresses for the report, and the
// dns::spf_check of DOMAIN, all at once on a reactor loop and a resolver
// of its own (no server or shard involved), and blocks until every lookup
// has answered or timed out. Then it prints one line per finding to
// standard output, in plain words; a failing line says what to fix, a
// temporary one (SERVFAIL, timeout) says so.
//
// Main thread of ringrelayctl only. Throws std::runtime_error when the ring
// or the resolver cannot start; every DNS outcome is a finding.
#pragma once

#include <ringrelay/dns/resolver.hh>
#include <string>
#include <vector>

namespace ringrelay::ctl {

struct check_domain_options {
  std::string domain;       // a host name: lower case, no final dot
  std::string spf_include;  // the include the SPF record should have; "" = not checked
  dns::resolver_options resolver;
  std::vector<std::string> allow_reserved;  // sender_verify.allow_reserved
  bool sender_verify_enabled = true;        // sender_verify.enabled; false adds a note
};

// Runs the checks and prints the findings: 0 when every one passes, 1
// when any fails.
int check_domain(const check_domain_options& opt);

}  // namespace ringrelay::ctl
