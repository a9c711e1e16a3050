// app/sender_verifier — the SMTP server's sender check (smtp::sender_verifier)
// over the shard's DNS sender checks (dns::sender_check).
//
// Each refusal is logged with its verdict's field (sender_verify=no_mx ...)
// and what decided it; accepted senders are not logged (the `accepted`
// line of the message follows). Shard-local: construct, call and destroy on
// the shard's thread, after the server is built and before it is destroyed
// (destroy it first: answers still pending are then dropped, and the
// server's connections go with it).
#pragma once

#include <memory>
#include <ringrelay/dns/sender_check.hh>
#include <ringrelay/smtp/server.hh>

namespace ringrelay::app {

class dns_sender_verifier final : public smtp::sender_verifier {
 public:
  explicit dns_sender_verifier(dns::sender_check& check) : _check(check) {}
  ~dns_sender_verifier() { *_alive = false; }
  dns_sender_verifier(const dns_sender_verifier&) = delete;
  dns_sender_verifier& operator=(const dns_sender_verifier&) = delete;

  void verify(std::string_view sender, done_callback done) override;

 private:
  dns::sender_check& _check;
  std::shared_ptr<bool> _alive = std::make_shared<bool>(true);
};

}  // namespace ringrelay::app
