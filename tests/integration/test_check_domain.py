"""ringrelayctl check-domain DOMAIN [--spf-include NAME] (issue 5, SPEC.md §4,
docs/ringrelayctl.md) on the real binary, against a real DNS server
(dns_server.py) that the config's dns.servers points at: a good domain
passes with exit 0 and one line per finding; each cause of a sender
verification failure is reported in words with what to fix (exit 1); the
SPF record is reported missing, doubled, unparsable, over 10 DNS-querying
terms through nested includes, including the relay's name or not, and in an
include loop; SERVFAIL and a server that never answers are reported as
temporary; usage errors exit 2. No relay runs: the command has its own
resolver.

Binary: RINGRELAYCTL_BIN, else tools/ringrelayctl/ringrelayctl in the build
directory of RINGRELAY_BIN (see test_ctl.py)."""
import json
import time
from pathlib import Path

from dns_server import DNSServer
from test_ctl import ctl, refused, workdir

D = "ringrelay-it.net"
RELAY = "_spf.relay.example"
MX_OK = [f"10 mx.good.{D}."]


def spf_only(*records: str) -> dict:
    """A domain that passes sender verification, with these TXT records."""
    return {"MX": MX_OK, "TXT": list(records)}


NAMES = {
    # Passes everything.
    f"good.{D}": {"MX": [f"10 mx.good.{D}.", f"20 mx2.good.{D}."],
                  "TXT": [f"v=spf1 mx include:{RELAY} -all", "site-verification=abc"]},
    f"mx.good.{D}": {"A": ["192.0.2.10"]},
    f"mx2.good.{D}": {"AAAA": ["2001:db8::10"]},
    RELAY: {"TXT": ["v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:100::/48 -all"]},
    f"aonly.{D}": {"A": ["192.0.2.11"], "TXT": [f"v=spf1 a include:{RELAY} -all"]},
    "allowed.test": {"MX": [f"10 mx.good.{D}."], "TXT": [f"v=spf1 include:{RELAY} -all"]},
    # Sender verification fails.
    f"txtonly.{D}": {"TXT": [f"v=spf1 include:{RELAY} -all"]},
    f"mxip.{D}": {"MX": ["10 192.0.2.12."]},
    f"mxcname.{D}": {"MX": [f"10 alias.{D}."]},
    f"alias.{D}": {"CNAME": f"mx.good.{D}."},
    f"nullmx.{D}": {"MX": ["0 ."], "TXT": ["v=spf1 -all"]},
    f"broken.{D}": "servfail",
    f"slow.{D}": "timeout",
    # SPF findings (sender verification passes).
    f"nospf.{D}": spf_only("site-verification=abc"),
    f"twospf.{D}": spf_only(f"v=spf1 include:{RELAY} -all", "v=spf1 mx -all"),
    f"badspf.{D}": spf_only(f"v=spf1 include:{RELAY} ip4:192.0.2 -all"),
    f"absent.{D}": spf_only("v=spf1 mx ip4:192.0.2.0/24 -all"),
    f"late.{D}": spf_only(f"v=spf1 mx -all include:{RELAY}"),
    f"soft.{D}": spf_only(f"v=spf1 ~include:{RELAY} -all"),
    f"nested.{D}": spf_only(f"v=spf1 include:spf.nested.{D} -all"),
    f"spf.nested.{D}": {"TXT": [f"v=spf1 ip4:192.0.2.0/24 include:{RELAY} ~all"]},
    # 3 + 4 + 4: the 11th term is include:l3 in l2's record.
    f"deep.{D}": spf_only(f"v=spf1 a mx include:l1.{D} -all"),
    f"l1.{D}": {"TXT": [f"v=spf1 a mx ptr include:l2.{D} -all"]},
    f"l2.{D}": {"TXT": [f"v=spf1 a mx ptr include:l3.{D} -all"]},
    f"l3.{D}": {"TXT": [f"v=spf1 include:{RELAY} -all"]},
    f"ten.{D}": spf_only(f"v=spf1 a mx ptr include:t1.{D} -all"),
    f"t1.{D}": {"TXT": [f"v=spf1 a mx ptr exists:x.{D} include:{RELAY} a:y.{D} -all"]},
    f"loopa.{D}": spf_only(f"v=spf1 include:loopb.{D} include:{RELAY} -all"),
    f"loopb.{D}": {"TXT": [f"v=spf1 mx include:loopa.{D} -all"]},
    f"dangling.{D}": spf_only(f"v=spf1 include:gone.{D} include:{RELAY} -all"),
    f"flaky.{D}": spf_only(f"v=spf1 include:broken.{D} include:{RELAY} -all"),
    f"redirected.{D}": spf_only(f"v=spf1 redirect=spf.nested.{D}"),
}


class Checker:
    """A DNS server serving NAMES and a config pointing at it (dns.timeout
    1 s, "test" allowed though reserved)."""

    def __init__(self, dns: DNSServer):
        self.dir = workdir()
        self.config = Path(self.dir) / "ringrelay.json"
        self.config.write_text(json.dumps({
            "listeners": [{"address": "127.0.0.1", "port": 2525, "tls": "none"}],
            "dns": {"servers": [dns.address], "timeout": "1s"},
            "sender_verify": {"allow_reserved": ["test"]},
        }))

    def run(self, domain: str, include: str = RELAY):
        args = ["--config", str(self.config), "check-domain", domain]
        if include:
            args += ["--spf-include", include]
        return ctl(*args, cwd=self.dir, timeout=30)


def check(c: Checker, domain: str, code: int, *lines: str, include: str = RELAY) -> list:
    """Runs check-domain; asserts the exit code and that each of `lines` is
    an output line. Returns the lines."""
    r = c.run(domain, include=include)
    out = r.stdout.splitlines()
    where = f"check-domain {domain}: exit {r.returncode}\nstdout:\n{r.stdout}\nstderr: {r.stderr}"
    assert r.returncode == code, f"expected exit {code}; {where}"
    assert r.stderr == "", f"nothing on stderr expected; {where}"
    for line in lines:
        assert line in out, f"no line {line!r}; {where}"
    return out


def line_with(out: list, start: str) -> str:
    found = [line for line in out if line.startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r}: {out}"
    return found[0]


def test_a_good_domain_passes_with_each_finding_on_its_line():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        out = check(c, f"Good.{D}.", 0,
                    f"MX: 10 mx.good.{D} (A 192.0.2.10)",
                    f"MX: 20 mx2.good.{D} (AAAA 2001:db8::10)",
                    "sender verification: passes (MAIL FROM from this domain is accepted)",
                    f"SPF: v=spf1 mx include:{RELAY} -all",
                    "SPF: 2 of 10 DNS-querying terms",
                    f"SPF: includes {RELAY}: yes",
                    f"good.{D}: every check passes")
        assert len(out) == 7, out
        check(c, f"aonly.{D}", 0,
              "MX: none; mail goes to the domain's own address (A 192.0.2.11)",
              "sender verification: passes (MAIL FROM from this domain is accepted)")
        # sender_verify.allow_reserved comes from the config.
        check(c, "allowed.test", 0, f"SPF: includes {RELAY}: yes")
        # Without --spf-include the include is not checked, and that is said.
        check(c, f"good.{D}", 0,
              "SPF: includes: not checked: no include name given (--spf-include NAME or "
              "sender_verify.spf_include)",
              include="")


def test_the_include_name_comes_from_the_config_unless_given():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        cfg = json.loads(c.config.read_text())
        cfg["sender_verify"]["spf_include"] = RELAY
        c.config.write_text(json.dumps(cfg))
        check(c, f"good.{D}", 0, f"SPF: includes {RELAY}: yes", include="")
        # --spf-include wins over the config.
        out = check(c, f"good.{D}", 1, include=f"other.{D}")
        assert line_with(out, "SPF: includes ").startswith(f"SPF: includes other.{D}: no;"), out
        cfg["sender_verify"]["spf_include"] = "not a name"
        c.config.write_text(json.dumps(cfg))
        r = c.run(f"good.{D}", include="")
        assert r.returncode == 1 and "sender_verify.spf_include" in r.stderr, \
            f"a bad include name in the config: exit {r.returncode}, stderr {r.stderr!r}"


def test_each_sender_verification_failure_is_reported_in_words():
    cases = [
        (f"nomx.{D}", "451 4.1.8 Sender verify failed: domain has no MX or A record",
         [f"nomx.{D} does not exist in DNS", "publish an MX record"]),
        (f"txtonly.{D}", "451 4.1.8 Sender verify failed: domain has no MX or A record",
         [f"txtonly.{D} has neither an MX nor an A or AAAA record", "publish an MX record"]),
        (f"mxip.{D}", "451 4.1.8 Sender verify failed: MX points to an IP address",
         ["192.0.2.12 is an IP address", "point the MX at a host name"]),
        (f"mxcname.{D}", "451 4.1.8 Sender verify failed: MX points to a CNAME",
         [f"alias.{D} is a CNAME for mx.good.{D}", f"point the MX at mx.good.{D} instead"]),
        (f"nullmx.{D}", "550 5.7.27 Sender domain accepts no mail (null MX)",
         ["remove the null MX"]),
        ("box.local", "451 4.1.8 Sender verify failed: domain is not a public domain",
         ["reserved suffix", "sender_verify.allow_reserved"]),
        ("other.test", "451 4.1.8 Sender verify failed: domain has no MX or A record",
         ["other.test does not exist in DNS"]),
    ]
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        for domain, reply, words in cases:
            out = check(c, domain, 1)
            line = line_with(out, "sender verification: fails")
            assert line.startswith(f"sender verification: fails: {reply}"), line
            assert "temporary" not in line, line
            for w in words:
                assert w in line, f"{domain}: {w!r} not in {line!r}"
        asked = [q[0] for q in dns.queries]
        assert "box.local" not in asked, "a reserved name was looked up"
        out = check(c, f"mxcname.{D}", 1)
        assert f"MX: 10 alias.{D} (a CNAME for mx.good.{D}: A 192.0.2.10)" in out, out
        out = check(c, f"nullmx.{D}", 1)
        assert "MX: 0 . (a null MX: the domain accepts no mail, RFC 7505)" in out, out
        out = check(c, f"txtonly.{D}", 1)
        assert "MX: none, and no A or AAAA record to take its place" in out, out


def test_servfail_and_timeout_are_temporary():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        for domain, words in [(f"broken.{D}", "SERVFAIL"), (f"slow.{D}", "no answer in time")]:
            started = time.monotonic()
            out = check(c, domain, 1)
            assert time.monotonic() - started < 5, "dns.timeout (1 s) was not used"
            sv = line_with(out, "sender verification:")
            assert sv.startswith("sender verification: fails (temporary): 451 4.4.3 "), sv
            assert words in sv and "run the check again" in sv, sv
            spf = line_with(out, f"SPF: the TXT lookup of {domain} failed")
            assert "(temporary: " in spf and words in spf, spf


def test_spf_missing_doubled_or_unparsable():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        out = check(c, f"nospf.{D}", 1,
                    "sender verification: passes (MAIL FROM from this domain is accepted)")
        line = line_with(out, "SPF: no SPF record")
        assert f'no TXT record of nospf.{D} starts with "v=spf1"' in line, line
        assert f'publish one, e.g. "v=spf1 include:{RELAY} -all"' in line, line

        out = check(c, f"twospf.{D}", 1)
        line = line_with(out, "SPF: 2 SPF records")
        assert "permerror, RFC 7208 4.5" in line and "merge them into one" in line, line
        assert '"v=spf1 mx -all"' in line, line

        out = check(c, f"badspf.{D}", 1, f"SPF: v=spf1 include:{RELAY} ip4:192.0.2 -all")
        line = line_with(out, "SPF: syntax error")
        assert line.startswith('SPF: syntax error in term 2 "ip4:192.0.2"'), line
        assert '"192.0.2" is not an IPv4 address' in line and "fix that term" in line, line
        assert not any("DNS-querying terms" in l for l in out), out


def test_spf_over_ten_terms_through_nested_includes():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        out = check(c, f"deep.{D}", 1)
        line = line_with(out, "SPF: more than 10 DNS-querying terms")
        assert f'number 11 is "include:l3.{D}" in the record of l2.{D}' in line, line
        assert f"reached through deep.{D}, l1.{D}" in line, line
        assert "RFC 7208 4.6.4" in line, line
        assert f"l3.{D}" not in [q[0] for q in dns.queries], "counting went on past the limit"
        assert line_with(out, f"SPF: includes {RELAY}:").startswith(
            f"SPF: includes {RELAY}: no (not before the limit stopped evaluation)")
        # Exactly 10 is within the limit.
        check(c, f"ten.{D}", 0, "SPF: 10 of 10 DNS-querying terms",
              f'SPF: includes {RELAY}: yes ("include:{RELAY}" in the record of t1.{D}, '
              f"reached through ten.{D})")


def test_spf_include_present_nested_absent_late_or_qualified():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        check(c, f"nested.{D}", 0, "SPF: 2 of 10 DNS-querying terms",
              f'SPF: includes {RELAY}: yes ("include:{RELAY}" in the record of spf.nested.{D}, '
              f"reached through nested.{D})")
        check(c, f"redirected.{D}", 0, "SPF: 2 of 10 DNS-querying terms")
        out = check(c, f"absent.{D}", 1, "SPF: 1 of 10 DNS-querying terms",
                    f'SPF: includes {RELAY}: no; add "include:{RELAY}" before the all term')
        assert f"absent.{D}: 1 finding to fix (above)" in out, out
        out = check(c, f"late.{D}", 1)
        assert "comes after the all term" in line_with(out, f"SPF: includes {RELAY}: no"), out
        assert any(l.startswith(f'SPF: note: "include:{RELAY}" is never evaluated') for l in out)
        out = check(c, f"soft.{D}", 1)
        line = line_with(out, f"SPF: includes {RELAY}:")
        assert 'with the qualifier "~"' in line and f'write "include:{RELAY}" without it' in line


def test_spf_loop_and_includes_that_cannot_be_read():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        out = check(c, f"loopa.{D}", 1, "SPF: at least 4 of 10 DNS-querying terms "
                    "(some records could not be read: below)", f"SPF: includes {RELAY}: yes")
        line = line_with(out, "SPF: include loop")
        assert f"loopa.{D} -> loopb.{D} -> loopa.{D}" in line, line
        assert "remove the term that points back" in line, line

        out = check(c, f"dangling.{D}", 1)
        line = line_with(out, f'SPF: "include:gone.{D}"')
        assert f"gone.{D} does not exist (a permerror, RFC 7208 5.2)" in line, line

        out = check(c, f"flaky.{D}", 1)
        line = line_with(out, f'SPF: "include:broken.{D}"')
        assert "failed (temporary: the DNS server answered SERVFAIL)" in line, line


def test_usage_errors_exit_2():
    with DNSServer(NAMES) as dns:
        c = Checker(dns)
        cfg = ["--config", str(c.config)]
        refused(ctl(*cfg, "check-domain", cwd=c.dir), 2, "usage: ringrelayctl check-domain DOMAIN")
        refused(ctl(*cfg, "check-domain", f"a@good.{D}", cwd=c.dir), 2,
                "takes a domain, not an address")
        refused(ctl(*cfg, "check-domain", "not a domain", cwd=c.dir), 2, "not a domain name")
        refused(ctl(*cfg, "check-domain", f"good.{D}", "--spf-include", "nodot", cwd=c.dir), 2,
                '--spf-include "nodot"')
        refused(ctl(*cfg, "ping", "--spf-include", RELAY, cwd=c.dir), 2,
                '--spf-include goes with "check-domain" only')
        manual = ctl("--help", cwd=c.dir).stdout
        assert "check-domain DOMAIN [--spf-include NAME]" in manual, manual
