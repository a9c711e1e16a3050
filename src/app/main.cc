// ringrelay — the server. Parses the command line, loads the configuration,
// opens the listeners, starts one shard per CPU and waits for signals:
// SIGTERM/SIGINT stop gracefully (exit 0 once sessions in flight finished
// and the spool is flushed).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <ringrelay/accounts/blocks_ledger.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/auth/failure_limiter.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/auth/verifier.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/net/listener.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/tls/tls.hh>
#include <string>
#include <vector>

#include "control.hh"
#include "shard.hh"

namespace {

constexpr const char* usage_text =
    R"(Usage: ringrelay [--config FILE] [--set KEY=VALUE]... [--check-config]

ringrelay is an authenticated SMTP relay: it accepts mail from accounts that
log in with AUTH (conf/users.json, managed with ringrelayctl) and from
trusted networks, checks the sender's domain in DNS, charges the account's
daily relay quota, stores each message durably and delivers it to the
recipients' MX hosts, or to delivery.relayhost when that is set.

Options:
  --config FILE       the server configuration (default: conf/ringrelay.json)
  --set KEY=VALUE     override one key by its dotted path, e.g.
                        --set shards=2 --set limits.idle_timeout=60
                        --set 'listeners=[{"address":"127.0.0.1","port":2525,"tls":"none"}]'
                      VALUE is JSON when it parses as JSON, else a string.
                      May be given many times; applied in order.
  --check-config      validate the configuration (after overrides), print
                      a summary and exit: 0 when valid, 1 otherwise
  --help              this text
  --version           print the version

Signals: SIGTERM or SIGINT stop accepting, let sessions in flight finish
(at most shutdown_grace seconds), flush the spool and exit 0. SIGHUP
reloads the accounts file (accounts.file); a bad file is logged and the
accounts already loaded stay. Other changes need a restart.
Keys and defaults: docs/configuration.md.
)";

struct options {
  std::string config = "conf/ringrelay.json";
  std::vector<std::string> overrides;
  bool check = false;
};

int parse_args(int argc, char** argv, options& opt) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "ringrelay: %s needs a value (see --help)\n", name);
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      fputs(usage_text, stdout);
      return 0;
    } else if (a == "--version") {
      puts("ringrelay 0.1.0");
      return 0;
    } else if (a == "--config") {
      const char* v = value("--config");
      if (!v) return 2;
      opt.config = v;
    } else if (a.rfind("--config=", 0) == 0) {
      opt.config = a.substr(9);
    } else if (a == "--set") {
      const char* v = value("--set");
      if (!v) return 2;
      opt.overrides.emplace_back(v);
    } else if (a.rfind("--set=", 0) == 0) {
      opt.overrides.push_back(a.substr(6));
    } else if (a == "--check-config") {
      opt.check = true;
    } else {
      fprintf(stderr, "ringrelay: unknown option '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  return -1;
}

ringrelay::log::level parse_level(const std::string& s) {
  using ringrelay::log::level;
  if (s == "debug") return level::debug;
  if (s == "warn") return level::warn;
  if (s == "error") return level::error;
  return level::info;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ringrelay;
  options opt;
  if (int rc = parse_args(argc, argv, opt); rc >= 0) return rc;

  std::shared_ptr<const config::server_config> cfg;
  try {
    cfg = std::make_shared<const config::server_config>(config::load(opt.config, opt.overrides));
  } catch (const config::config_error& e) {
    fprintf(stderr, "ringrelay: configuration error: %s\n", e.what());
    return 1;
  }
  for (const auto& l : cfg->listeners) {
    if (l.tls == config::tls_mode::implicit && cfg->tls.cert.empty()) {
      fprintf(stderr,
              "ringrelay: configuration error: %s: listener %s:%u uses implicit TLS but tls.cert "
              "is not set; set tls.cert and tls.key (tools/run makes a self-signed pair)\n",
              opt.config.c_str(), l.address.c_str(), l.port);
      return 1;
    }
  }
  if (!cfg->tls.cert.empty()) {
    // Load the pair once here so a bad file is a clear startup error, not a
    // failure inside a shard.
    try {
      ringrelay::tls::context::server(cfg->tls.cert, cfg->tls.key);
    } catch (const std::exception& e) {
      fprintf(stderr, "ringrelay: configuration error: %s: %s\n", opt.config.c_str(), e.what());
      return 1;
    }
  }
  if (opt.check) {
    printf("%s: valid (%u shard(s), %zu listener(s), spool %s, relayhost %s)\n", opt.config.c_str(),
           cfg->shards, cfg->listeners.size(), cfg->spool.dir.c_str(),
           cfg->delivery.relayhost.empty() ? "(none)" : cfg->delivery.relayhost.c_str());
    return 0;
  }
  log::set_level(parse_level(cfg->log_level));
  // Shards write their log batches through their rings concurrently; with
  // O_APPEND each batch lands whole at the end of a log file instead of at a
  // shared file position that the writers would race on.
  if (int fl = fcntl(2, F_GETFL); fl >= 0) fcntl(2, F_SETFL, fl | O_APPEND);

  // Signals are taken by this thread alone (sigwait): block them before any
  // shard thread exists so every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Accounts: a missing file means no AUTH (trusted networks only); a bad
  // one is an error. Reloaded on SIGHUP.
  accounts::counter_store counters;
  std::shared_ptr<const accounts::table> users;
  auto load_users = [&]() -> std::shared_ptr<const accounts::table> {
    return accounts::load(cfg->accounts.file, counters, auth::password_hash_problem);
  };
  if (std::filesystem::exists(cfg->accounts.file)) {
    try {
      users = load_users();
    } catch (const config::config_error& e) {
      fprintf(stderr, "ringrelay: accounts error: %s\n", e.what());
      return 1;
    }
  } else {
    RR_WARN(
        "accounts file %s not found: AUTH is not offered, only trusted_networks may send "
        "(create accounts with ringrelayctl user add)",
        cfg->accounts.file.c_str());
  }
  // Mail from trusted networks is charged to, and restricted like, this
  // account; one that the file lacks leaves that mail free and unchecked.
  auto check_trusted_account = [&] {
    const std::string& name = cfg->accounts.trusted_account;
    if (!name.empty() && (!users || !users->find(name)))
      RR_WARN(
          "accounts.trusted_account %s is not in %s: mail from trusted_networks is neither "
          "charged nor checked against an account (add it with ringrelayctl user add, or fix "
          "the name)",
          name.c_str(), cfg->accounts.file.c_str());
  };
  check_trusted_account();
  std::unique_ptr<auth::verifier> verifier;
  if (users) verifier = std::make_unique<auth::verifier>(cfg->auth.workers, 4096);
  auth::limiter_config limits;
  limits.max_failures = cfg->auth.max_failures;
  limits.window_ms = std::int64_t{cfg->auth.failure_window} * 1000;
  auth::shared_failure_limiter limiter(limits);
  // Daily quotas reset at 00:00 in this zone; read once, shared read-only.
  accounts::quota_clock quota_clock;
  try {
    quota_clock = accounts::quota_clock::load(cfg->quota.time_zone);
  } catch (const config::config_error& e) {
    fprintf(stderr, "ringrelay: configuration error: %s: quota.time_zone: %s\n", opt.config.c_str(),
            e.what());
    return 1;
  }

  std::vector<std::unique_ptr<app::shard>> shards;
  // No shard takes mail before every shard has restored its usage.
  app::startup_gate gate(cfg->shards);
  // users.json is reloaded by SIGHUP (this thread) and by the control
  // socket's "reload" (its thread): one at a time.
  std::mutex users_mutex;
  auto reload_users = [&](const char* why) -> std::string {
    std::lock_guard lock(users_mutex);
    if (!users) {
      RR_WARN("%s: AUTH was off at start (no %s); restart to enable it", why,
              cfg->accounts.file.c_str());
      return "AUTH was off at start (no " + cfg->accounts.file +
             "): restart ringrelay to enable it";
    }
    try {
      users = load_users();
      for (auto& s : shards) s->set_accounts(users);
      RR_INFO("%s: reloaded %s (%zu accounts)", why, cfg->accounts.file.c_str(), users->size());
      check_trusted_account();
      return "";
    } catch (const config::config_error& e) {
      RR_ERROR("%s: %s; keeping the accounts already loaded", why, e.what());
      return std::string(e.what()) + "; the accounts already loaded stay in force";
    }
  };
  // The blocks operators added (ringrelayctl blocks add) live in the spool
  // directory, which may not exist yet: they join the balances before any
  // shard charges.
  std::unique_ptr<accounts::blocks_ledger> blocks_ledger;
  try {
    std::filesystem::create_directories(cfg->spool.dir);
    blocks_ledger = accounts::blocks_ledger::load(cfg->spool.dir + "/" +
                                                  std::string(accounts::blocks_ledger_file));
  } catch (const std::exception& e) {
    RR_ERROR("cannot start: spool.dir %s: %s", cfg->spool.dir.c_str(), e.what());
    return 1;
  }
  for (const auto& [user, added] : blocks_ledger->all()) {
    const accounts::account* a = users ? users->find(user) : nullptr;
    accounts::add_blocks(counters.slot_for(user, a ? a->blocks : 0), added);
  }
  app::control_server control(cfg->control.socket);
  control.on("reload", [&](const app::json_request&) {
    std::string error = reload_users("control");
    if (!error.empty()) return app::control_reply::failure(error);
    std::lock_guard lock(users_mutex);
    return app::control_reply::success().set("accounts", users->size());
  });
  auto current_users = [&] {
    std::lock_guard lock(users_mutex);
    return users;
  };
  app::add_accounting_commands(
      control, {current_users, cfg->accounts.file, blocks_ledger.get(), &quota_clock});
  try {
    reactor::loop::probe_kernel();
    std::error_code ec;
    std::filesystem::create_directories(cfg->spool.dir, ec);
    if (ec)
      throw std::runtime_error("spool.dir " + cfg->spool.dir +
                               ": cannot create it: " + ec.message());
    for (unsigned i = 0; i < cfg->shards; ++i) {
      std::vector<int> fds;
      for (const auto& l : cfg->listeners) fds.push_back(net::open_listener(l.address, l.port));
      shards.push_back(std::make_unique<app::shard>(i, cfg, std::move(fds), users, verifier.get(),
                                                    &limiter, &quota_clock, &counters, &gate));
    }
    for (auto& s : shards) s->start();
    // After the shards: a reload hands the new table to every one of them.
    control.start();
  } catch (const std::exception& e) {
    RR_ERROR("cannot start: %s", e.what());
    gate.abandon();
    for (auto& s : shards) s->request_stop();
    shards.clear();
    return 1;
  }
  RR_INFO("ringrelay started shards=%u listeners=%zu hostname=%s", cfg->shards,
          cfg->listeners.size(), cfg->hostname.c_str());
  for (const auto& l : cfg->listeners)
    if (l.tls == config::tls_mode::starttls && cfg->tls.cert.empty())
      RR_WARN("listener %s:%u: tls.cert is not set, so STARTTLS is not offered", l.address.c_str(),
              l.port);

  for (;;) {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGHUP) {
      // users.json is reloaded; the rest of the configuration reloads later.
      reload_users("SIGHUP");
      continue;
    }
    RR_INFO("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  control.stop();
  for (auto& s : shards) s->request_stop();
  for (auto& s : shards) s->join();
  if (verifier) verifier->stop();
  RR_INFO("ringrelay stopped");
  return 0;
}
