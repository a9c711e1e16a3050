#include "sender_verifier.hh"

#include <ringrelay/log/log.hh>
#include <string>

namespace ringrelay::app {

void dns_sender_verifier::verify(std::string_view sender, done_callback done) {
  _check.check(sender, [alive = _alive, sender = std::string(sender),
                        done = std::move(done)](const dns::sender_verdict& v) {
    if (!*alive) return;
    if (v.accepted()) {
      done("");
      return;
    }
    std::string reply = v.reply();
    RR_INFO("sender refused from=<%s> %s detail=\"%s\" reply=\"%s\"", sender.c_str(),
            v.log_field().c_str(), v.detail.c_str(), reply.c_str());
    done(reply);
  });
}

}  // namespace ringrelay::app
