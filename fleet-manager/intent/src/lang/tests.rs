//! Whole-language tests: the sample, every construct, the errors users meet, and the
//! properties that tie `parse` and `print` together.

use palisade_program::{PortRange, Prefix, Protocol, TierKind};
use proptest::prelude::*;

use super::*;
use crate::objects::*;

/// The example of `docs/policy-language.md`.
const SAMPLE: &str = r#"# shop.pal
tag-type owner
tag application=shop tier=web tier=app tier=db
address-group quarantine = 10.9.0.0/16 192.0.2.0/24
address-group pci label pci
service-group web = tcp/80,443 udp/53

policy quarantine tier admin seq 0100 {
  0010: deny any > group:quarantine on any log
  0020: deny group:quarantine > any on any log
}

project shop {
  tag deployment=prod
  policy three-tier {
    0010: allow any > tier=web on tcp/443
    0020: allow tier=web > tier=app on tcp/8080 match application,deployment
    0030: allow tier=app > tier=db&deployment=prod on services:db-ports log
    0040: allow tier=web <> tier=web on icmp
    0050: allow tier=app > 10.20.0.0/16 on tcp/5432 from 1024-65535 redirect pg-proxy
    0060: deny tier=db > any on any audit
    0070: next-tier any > network:backend on udp/53 mirror tap0
  }
  application-policy-set shop for application=shop {
    0010: three-tier
    0020: global-extras
  }
}
application-policy-set everyone global {
  baseline-allow
}
"#;

fn objects(source: &str) -> Vec<Object> {
    match parse(source) {
        Ok(doc) => doc.into_objects(),
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.render("test.pal", source))
                .collect::<String>()
        ),
    }
}

fn prefix(text: &str) -> Prefix {
    text.parse().unwrap()
}

fn ports(text: &str) -> Vec<PortRange> {
    text.split(',').map(|p| p.parse().unwrap()).collect()
}

fn tags(text: &str) -> EndpointSpec {
    EndpointSpec::Tags(text.split('&').map(|t| t.parse().unwrap()).collect())
}

fn svc(protocol: Option<Protocol>, dst: &str, src: &str) -> Service {
    let list = |t: &str| if t.is_empty() { Vec::new() } else { ports(t) };
    Service {
        protocol,
        src_ports: list(src),
        dst_ports: list(dst),
    }
}

/// A rule with no modifiers.
fn rule(
    key: &str,
    action: RuleAction,
    endpoint_1: EndpointSpec,
    direction: RuleDirection,
    endpoint_2: EndpointSpec,
    service: ServiceSpec,
) -> FirewallRule {
    FirewallRule {
        sequence: key.to_string(),
        action,
        endpoint_1,
        direction,
        endpoint_2,
        service,
        match_tags: Vec::new(),
        log: false,
        audit: false,
        mirror: None,
        redirect: None,
    }
}

fn shop() -> Scope {
    Scope::Project("shop".to_string())
}

fn tag(scope: Scope, kind: &str, value: &str) -> Object {
    Object::Tag(Tag {
        scope,
        kind: kind.to_string(),
        value: value.to_string(),
    })
}

fn entry(key: &str, policy: &str) -> PolicyEntry {
    PolicyEntry {
        sequence: key.to_string(),
        policy: policy.to_string(),
    }
}

fn sample_objects() -> Vec<Object> {
    use EndpointSpec::{AddressGroup as Group, Any, Network, Subnet};
    use RuleAction::{Allow, Deny, NextTier};
    use RuleDirection::{Both, Forward};
    let any_service = ServiceSpec::Inline(Service::any());
    let inline = |p, dst, src| ServiceSpec::Inline(svc(Some(p), dst, src));
    vec![
        Object::TagType(TagType {
            name: "owner".to_string(),
        }),
        tag(Scope::Global, "application", "shop"),
        tag(Scope::Global, "tier", "web"),
        tag(Scope::Global, "tier", "app"),
        tag(Scope::Global, "tier", "db"),
        Object::AddressGroup(AddressGroup {
            name: "quarantine".to_string(),
            scope: Scope::Global,
            prefixes: vec![prefix("10.9.0.0/16"), prefix("192.0.2.0/24")],
            label: None,
        }),
        Object::AddressGroup(AddressGroup {
            name: "pci".to_string(),
            scope: Scope::Global,
            prefixes: Vec::new(),
            label: Some("pci".to_string()),
        }),
        Object::ServiceGroup(ServiceGroup {
            name: "web".to_string(),
            scope: Scope::Global,
            services: vec![
                svc(Some(Protocol::TCP), "80,443", ""),
                svc(Some(Protocol::UDP), "53", ""),
            ],
        }),
        Object::FirewallPolicy(FirewallPolicy {
            name: "quarantine".to_string(),
            scope: Scope::Global,
            tier: TierKind::Admin,
            sequence: "0100".to_string(),
            rules: vec![
                FirewallRule {
                    log: true,
                    ..rule(
                        "0010",
                        Deny,
                        Any,
                        Forward,
                        Group("quarantine".to_string()),
                        any_service.clone(),
                    )
                },
                FirewallRule {
                    log: true,
                    ..rule(
                        "0020",
                        Deny,
                        Group("quarantine".to_string()),
                        Forward,
                        Any,
                        any_service.clone(),
                    )
                },
            ],
        }),
        tag(shop(), "deployment", "prod"),
        Object::FirewallPolicy(FirewallPolicy {
            name: "three-tier".to_string(),
            scope: shop(),
            tier: TierKind::Application,
            sequence: String::new(),
            rules: vec![
                rule(
                    "0010",
                    Allow,
                    Any,
                    Forward,
                    tags("tier=web"),
                    inline(Protocol::TCP, "443", ""),
                ),
                FirewallRule {
                    match_tags: vec!["application".to_string(), "deployment".to_string()],
                    ..rule(
                        "0020",
                        Allow,
                        tags("tier=web"),
                        Forward,
                        tags("tier=app"),
                        inline(Protocol::TCP, "8080", ""),
                    )
                },
                FirewallRule {
                    log: true,
                    ..rule(
                        "0030",
                        Allow,
                        tags("tier=app"),
                        Forward,
                        tags("tier=db&deployment=prod"),
                        ServiceSpec::Group("db-ports".to_string()),
                    )
                },
                rule(
                    "0040",
                    Allow,
                    tags("tier=web"),
                    Both,
                    tags("tier=web"),
                    inline(Protocol::ICMP, "", ""),
                ),
                FirewallRule {
                    redirect: Some("pg-proxy".to_string()),
                    ..rule(
                        "0050",
                        Allow,
                        tags("tier=app"),
                        Forward,
                        Subnet(prefix("10.20.0.0/16")),
                        inline(Protocol::TCP, "5432", "1024-65535"),
                    )
                },
                FirewallRule {
                    audit: true,
                    ..rule(
                        "0060",
                        Deny,
                        tags("tier=db"),
                        Forward,
                        Any,
                        any_service.clone(),
                    )
                },
                FirewallRule {
                    mirror: Some("tap0".to_string()),
                    ..rule(
                        "0070",
                        NextTier,
                        Any,
                        Forward,
                        Network("backend".to_string()),
                        inline(Protocol::UDP, "53", ""),
                    )
                },
            ],
        }),
        Object::ApplicationPolicySet(ApplicationPolicySet {
            name: "shop".to_string(),
            scope: shop(),
            application: Some(TagRef::new("application", "shop")),
            policies: vec![entry("0010", "three-tier"), entry("0020", "global-extras")],
        }),
        Object::ApplicationPolicySet(ApplicationPolicySet {
            name: "everyone".to_string(),
            scope: Scope::Global,
            application: None,
            policies: vec![entry("0010", "baseline-allow")],
        }),
    ]
}

#[test]
fn parses_the_sample_into_its_objects() {
    assert_eq!(objects(SAMPLE), sample_objects());
}

#[test]
fn spans_point_at_object_names() {
    let doc = parse(SAMPLE).unwrap();
    let spans: Vec<(usize, usize, usize)> = doc
        .objects
        .iter()
        .map(|o| (o.span.line, o.span.column, o.span.len))
        .collect();
    assert_eq!(spans[0], (2, 10, 5)); // owner
    assert_eq!(spans[2], (3, 22, 8)); // tier=web
    assert_eq!(spans[8], (8, 8, 10)); // policy quarantine
    assert_eq!(spans[10], (15, 10, 10)); // three-tier
    assert_eq!(spans[12], (29, 24, 8)); // everyone
}

#[test]
fn printing_the_sample_is_a_fixed_point() {
    let printed = print(&objects(SAMPLE));
    assert_eq!(objects(&printed), sample_objects());
    assert_eq!(print(&objects(&printed)), printed);
    assert!(printed.starts_with(
        "tag-type owner\ntag application=shop\ntag tier=web\ntag tier=app\ntag tier=db\n"
    ));
    assert!(printed.contains("\nproject shop {\n  tag deployment=prod\n\n  policy three-tier {\n    0010: allow any > tier=web on tcp/443\n"));
    assert!(
        printed
            .ends_with("\napplication-policy-set everyone global {\n  0010: baseline-allow\n}\n")
    );
}

#[test]
fn parses_every_endpoint_form() {
    let r = |text: &str| {
        parse_rule(&format!("allow {text} > any on any"))
            .unwrap()
            .endpoint_1
    };
    assert_eq!(r("any"), EndpointSpec::Any);
    assert_eq!(
        r("global:tier=web&label=pci"),
        EndpointSpec::Tags(vec![
            TagRef {
                global: true,
                ..TagRef::new("tier", "web")
            },
            TagRef::new("label", "pci"),
        ])
    );
    assert_eq!(
        r("group:g.1"),
        EndpointSpec::AddressGroup("g.1".to_string())
    );
    assert_eq!(
        r("network:net_a"),
        EndpointSpec::Network("net_a".to_string())
    );
    assert_eq!(r("10.0.0.0/8"), EndpointSpec::Subnet(prefix("10.0.0.0/8")));
    assert_eq!(r("192.0.2.7"), EndpointSpec::Subnet(prefix("192.0.2.7/32")));
    assert_eq!(
        r("2001:db8::/32"),
        EndpointSpec::Subnet(prefix("2001:db8::/32"))
    );
    assert_eq!(r("::1"), EndpointSpec::Subnet(prefix("::1/128")));
}

#[test]
fn parses_every_service_form_and_modifier() {
    let s = |text: &str| {
        parse_rule(&format!("allow any > any on {text}"))
            .unwrap()
            .service
    };
    let inline = |p, dst, src| ServiceSpec::Inline(svc(p, dst, src));
    assert_eq!(s("any"), inline(None, "", ""));
    assert_eq!(s("sctp"), inline(Some(Protocol::SCTP), "", ""));
    assert_eq!(s("47"), inline(Some(Protocol(47)), "", ""));
    assert_eq!(s("6/22"), inline(Some(Protocol::TCP), "22", ""));
    assert_eq!(s("icmpv6"), inline(Some(Protocol::ICMPV6), "", ""));
    assert_eq!(
        s("udp/53,5353,6000-6010"),
        inline(Some(Protocol::UDP), "53,5353,6000-6010", "")
    );
    assert_eq!(
        s("tcp from 1024-65535,80"),
        inline(Some(Protocol::TCP), "", "1024-65535,80")
    );
    assert_eq!(s("services:web"), ServiceSpec::Group("web".to_string()));

    let r = parse_rule(
        "7: allow 10.0.0.0/8 < any on tcp/443 redirect waf mirror tap log match deployment",
    )
    .unwrap();
    assert_eq!(r.sequence, "7");
    assert_eq!(r.direction, RuleDirection::Backward);
    assert_eq!(r.match_tags, vec!["deployment".to_string()]);
    assert!(r.log && !r.audit);
    assert_eq!(r.mirror.as_deref(), Some("tap"));
    assert_eq!(r.redirect.as_deref(), Some("waf"));
    assert_eq!(
        print_rule(&r),
        "7: allow 10.0.0.0/8 < any on tcp/443 match deployment log mirror tap redirect waf"
    );
    let unkeyed = parse_rule("  # a comment\n deny any <> any on any audit log # why\n\n").unwrap();
    assert_eq!(unkeyed.sequence, "");
    assert_eq!(print_rule(&unkeyed), "deny any <> any on any log audit");
}

#[test]
fn parses_blocks_scopes_and_options() {
    let got = objects(
        "project p {\r\n  tag tier=web label=x\r\n  address-group a = 10.0.0.1 label l\r\n  \
         service-group s = any icmp tcp/1 from 2 udp\r\n  policy e tier baseline {}\r\n  \
         policy f seq 9 tier application {\r\n  }\r\n}\r\npolicy g {\n}\n\
         application-policy-set x for global:application=y {\n}\n",
    );
    let p = || Scope::Project("p".to_string());
    assert_eq!(
        got,
        vec![
            tag(p(), "tier", "web"),
            tag(p(), "label", "x"),
            Object::AddressGroup(AddressGroup {
                name: "a".to_string(),
                scope: p(),
                prefixes: vec![prefix("10.0.0.1/32")],
                label: Some("l".to_string()),
            }),
            Object::ServiceGroup(ServiceGroup {
                name: "s".to_string(),
                scope: p(),
                services: vec![
                    Service::any(),
                    svc(Some(Protocol::ICMP), "", ""),
                    svc(Some(Protocol::TCP), "1", "2"),
                    svc(Some(Protocol::UDP), "", ""),
                ],
            }),
            Object::FirewallPolicy(FirewallPolicy {
                name: "e".to_string(),
                scope: p(),
                tier: TierKind::Baseline,
                sequence: String::new(),
                rules: Vec::new(),
            }),
            Object::FirewallPolicy(FirewallPolicy {
                name: "f".to_string(),
                scope: p(),
                tier: TierKind::Application,
                sequence: "9".to_string(),
                rules: Vec::new(),
            }),
            Object::FirewallPolicy(FirewallPolicy {
                name: "g".to_string(),
                scope: Scope::Global,
                tier: TierKind::Application,
                sequence: String::new(),
                rules: Vec::new(),
            }),
            Object::ApplicationPolicySet(ApplicationPolicySet {
                name: "x".to_string(),
                scope: Scope::Global,
                application: Some(TagRef {
                    global: true,
                    ..TagRef::new("application", "y")
                }),
                policies: Vec::new(),
            }),
        ]
    );
}

#[test]
fn numbers_unkeyed_blocks_with_one_sortable_width() {
    let rules: String = (0..1000).map(|_| "allow any > any on any\n").collect();
    let got = objects(&format!("policy big {{\n{rules}}}\n"));
    let Object::FirewallPolicy(p) = &got[0] else {
        panic!("not a policy");
    };
    assert_eq!(p.rules[0].sequence, "00010");
    assert_eq!(p.rules[999].sequence, "10000");
    assert!(p.rules.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let got = objects("policy small {\n deny any > any on any\n allow any > any on any\n}");
    let Object::FirewallPolicy(p) = &got[0] else {
        panic!("not a policy");
    };
    let keys: Vec<&str> = p.rules.iter().map(|r| r.sequence.as_str()).collect();
    assert_eq!(keys, ["0010", "0020"]);
}

#[test]
fn names_may_be_keywords_where_a_name_stands() {
    let text = "address-group label = 10.0.0.0/8 label label\n\
                policy tier tier admin seq seq {\n  allow: allow any > group:label on any match log mirror redirect redirect log\n}\n\
                application-policy-set for for application=global {\n  0010: policy\n}\n";
    let got = objects(text);
    assert_eq!(got.len(), 3);
    assert_eq!(
        print(&got),
        text.replace("policy tier", "\npolicy tier")
            .replace("application-policy-set for", "\napplication-policy-set for")
    );
}

/// An error as `LINE:COLUMN+LENGTH MESSAGE[ | help: HELP]`.
fn summary(e: &ParseError) -> String {
    let help = e
        .help
        .as_ref()
        .map(|h| format!(" | help: {h}"))
        .unwrap_or_default();
    format!(
        "{}:{}+{} {}{help}",
        e.span.line, e.span.column, e.span.len, e.message
    )
}

/// Checks that each source has exactly its one expected error; reports every mismatch.
fn check_all<S: AsRef<str>>(cases: &[(S, &str)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(source, expected)| {
            let source = source.as_ref();
            let got: Vec<String> = match parse(source) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.iter().map(summary).collect(),
            };
            (got != [*expected])
                .then(|| format!("{source}\n  got      {got:?}\n  expected {expected:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn in_policy(rule: &str) -> String {
    format!("policy p {{\n  {rule}\n}}\n")
}

#[test]
fn reports_typical_rule_mistakes() {
    // Each rule is line 2 of a policy, after two spaces.
    let cases = [
        (
            "0010: allow any > tier=web tcp/443",
            "2:30+7 expected `on` and the service, found `tcp/443` | help: write `on tcp/443`",
        ),
        (
            "0010: allow any > tier=web",
            "2:29+1 expected `on` and the service, found the end of the line | help: a rule ends with `on SERVICE`, e.g. `on tcp/443`, `on any` or `on services:web`",
        ),
        (
            "0010: allow tier=web tier=app on tcp/8080",
            "2:24+8 expected a direction (`>`, `<` or `<>`), found `tier=app` | help: a rule reads `ENDPOINT > ENDPOINT`: `>` lets the first endpoint initiate, `<` the second, `<>` either",
        ),
        (
            "0010: allow any -> any on any",
            "2:19+2 expected a direction (`>`, `<` or `<>`), found `->` | help: write `>`: the first endpoint initiates",
        ),
        (
            "0010: allow tier=web>tier=app on any",
            "2:15+17 expected an endpoint, found `tier=web>tier=app` | help: put spaces around the direction: `tier=web > tier=app`",
        ),
        (
            "0010: allow any > 10.0.0.1/8 on any",
            "2:21+10 `10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`? | help: write `10.0.0.0/8` for the subnet, or `10.0.0.1` for the single address",
        ),
        (
            "0010: allow any > 10.0.0.0/33 on any",
            "2:21+11 `10.0.0.0/33`: prefix length must be a number from 0 to 32",
        ),
        (
            "0010: allow any > 10.0.0/8 on any",
            "2:21+8 `10.0.0` is not an IP address",
        ),
        (
            "0010: allow any > web on any",
            "2:21+3 expected the second endpoint, found `web` | help: a tag is written `TYPE=VALUE` (e.g. `tier=web`), an address group `group:web`, a network `network:web`",
        ),
        (
            "0010: allow grop:x > any on any",
            "2:15+6 expected an endpoint, found `grop:x` | help: `grop:` is not an endpoint kind (did you mean `group:`?); use `group:NAME`, `network:NAME` or `global:TYPE=VALUE`",
        ),
        (
            "0010: allow tier=web& > any on any",
            "2:24+1 empty tag in `tier=web&` | help: join tags with `&` and no spaces: `tier=web&deployment=prod`",
        ),
        (
            "0010: allow tier=w!b > any on any",
            "2:15+8 `tier=w!b`: the tag value `w!b` must be letters, digits, `.`, `_` or `-`",
        ),
        (
            "0010: allow any > any on tpc/80",
            "2:28+3 `tpc` is not a protocol: use tcp, udp, sctp, icmp, icmpv6 or a number 0-255 | help: did you mean `tcp`?",
        ),
        (
            "0010: allow any > any on 443",
            "2:28+3 `443` is not a protocol: use tcp, udp, sctp, icmp, icmpv6 or a number 0-255 | help: for a port, write `tcp/443` or `udp/443`",
        ),
        (
            "0010: allow any > any on tcp/80,70000",
            "2:35+5 `70000` is not a port number (0-65535)",
        ),
        (
            "0010: allow any > any on tcp/90-80",
            "2:32+5 port range `90-80` is empty: the first port must not be above the last",
        ),
        (
            "0010: allow any > any on tcp/80, 443",
            "2:35+1 empty port in `80,` | help: separate ports with `,` and no spaces: `80,443`",
        ),
        (
            "0010: allow any > any on tcp/http",
            "2:32+4 `http` is not a port or a port range | help: write a port like `443` or a range like `8000-8080`",
        ),
        (
            "0010: allow any > any on icmp/8",
            "2:33+1 `icmp` has no ports: ports are only for tcp, udp and sctp",
        ),
        (
            "0010: allow any > any on any/80",
            "2:32+2 ports need a protocol | help: write `tcp/PORTS`, `udp/PORTS` or `sctp/PORTS`",
        ),
        (
            "0010: allow any > any on icmp from 80",
            "2:33+4 `icmp` has no ports: source ports are only for tcp, udp and sctp",
        ),
        (
            "0010: allow any > any on services:web from 80",
            "2:41+4 `from` can't follow a service group: its services carry their own ports",
        ),
        (
            "0010: allow any > any on tcp/80 udp/53",
            "2:35+6 expected a modifier (`match`, `log`, `audit`, `mirror` or `redirect`), found `udp/53` | help: a rule has one service: for several, define a `service-group` and write `on services:NAME`",
        ),
        (
            "0010: pass any > any on any",
            "2:9+4 `pass` is not an action here | help: POLICY.md's \"pass\" is `allow` here, and its pass-to-next-tier is `next-tier`",
        ),
        (
            "0010: permit any > any on any",
            "2:9+6 expected an action (`allow`, `deny` or `next-tier`) after the key, found `permit` | help: did you mean `allow`?",
        ),
        (
            "0010 allow any > any on any",
            "2:3+4 expected an action (`allow`, `deny` or `next-tier`), found `0010` | help: a key is written with its colon attached: `0010: ...`",
        ),
        (
            "0010: allow any > any on any match application,label",
            "2:50+5 `match` can't use `label` | help: an endpoint may carry several labels, so they can't be compared; match single-valued types such as `application` or `deployment`",
        ),
        (
            "0010: allow any > any on any audit",
            "2:32+5 `audit` is only for `deny` rules | help: `audit` logs \"would deny\" and lets the connection through; to record allowed connections, use `log`",
        ),
        (
            "0010: deny any > any on any redirect waf",
            "2:31+8 `redirect` is only for `allow` rules | help: `redirect NAME` hands the connections a rule allows to the L7 firewall service NAME",
        ),
        (
            "0010: allow any > any on any logg",
            "2:32+4 expected a modifier (`match`, `log`, `audit`, `mirror` or `redirect`), found `logg` | help: did you mean `log`?",
        ),
        (
            "0010: deny any > any on any log log",
            "2:35+3 `log` is given twice",
        ),
        (
            "0010: allow any > any on any mirror",
            "2:38+1 expected a mirror destination after `mirror`, found the end of the line",
        ),
        (
            "0010: allow any > group:a/b on any",
            "2:27+3 `a/b` is not a valid name | help: names are made of letters, digits, `.`, `_` or `-`, starting with a letter or digit",
        ),
    ];
    let cases: Vec<(String, &str)> = cases
        .iter()
        .map(|(rule, e)| (in_policy(rule), *e))
        .collect();
    check_all(&cases);
}

#[test]
fn reports_typical_block_and_statement_mistakes() {
    check_all(&[
        (
            "policy p {\n  0010: allow any > any on any\n",
            "1:10+1 policy `p` is not closed | help: add a line with `}` after its last rule",
        ),
        (
            "project shop {\n  tag a=b\n",
            "1:14+1 project `shop` is not closed | help: add a line with `}` after its last statement",
        ),
        (
            "policy p {\n  0010: deny any > any on any\n  allow any > any on any\n}\n",
            "3:3+5 this rule has no key, but other rules of policy `p` do | help: give every rule of a block a key (`0010: ...`) or none (keys are then 0010, 0020, ...)",
        ),
        (
            "application-policy-set s global {\n  a\n  0020: b\n}\n",
            "3:3+4 this entry has a key, but the entry on line 2 does not | help: give every entry of a block a key (`0010: ...`) or none (keys are then 0010, 0020, ...)",
        ),
        (
            "policy p {\n  10: deny any > any on any\n  10: allow any > any on any\n}\n",
            "3:3+2 duplicate key `10` in policy `p` | help: `10` is first used on line 2; keys order the rules and must differ",
        ),
        (
            "policy p {\n  deny any > any on any\npolicy q {\n}\n",
            "3:1+6 expected a rule or `}`, found `policy` | help: policy `p` (line 1) has no closing `}`: add one before this line",
        ),
        (
            "policy p\n  deny any > any on any\n}\n",
            "1:9+1 expected `{` at the end of the line, found the end of the line | help: a block opens with `{` at the end of its first line and closes with `}` on a line of its own",
        ),
        (
            "policy p\n{\n  deny any > any on any\n}\n",
            "1:9+1 expected `{` at the end of the line, found the end of the line | help: a block opens with `{` at the end of its first line and closes with `}` on a line of its own",
        ),
        (
            "policy p { deny any > any on any }\n",
            "1:12+4 unexpected `deny` after `{` | help: put each rule or entry on a line of its own, and `}` on its own line",
        ),
        (
            "}\n",
            "1:1+1 unexpected `}`: no block is open | help: a `}` closes the `project`, `policy` or `application-policy-set` block it belongs to",
        ),
        (
            "allow any > any on any\n",
            "1:1+5 expected a statement (`tag-type`, `tag`, `address-group`, `service-group`, `policy`, `application-policy-set` or `project`), found `allow` | help: a rule goes inside a `policy NAME { ... }` block",
        ),
        (
            "polcy p {\n}\n",
            "1:1+5 expected a statement (`tag-type`, `tag`, `address-group`, `service-group`, `policy`, `application-policy-set` or `project`), found `polcy` | help: did you mean `policy`?",
        ),
        (
            "policy p tier platform {\n}\n",
            "1:15+8 unknown tier `platform`: use `admin`, `application` or `baseline`",
        ),
        (
            "policy p priority 5 {\n}\n",
            "1:10+8 expected `tier`, `seq` or `{` after the policy name, found `priority`",
        ),
        (
            "project p {\n  tag-type owner\n}\n",
            "2:3+8 a tag type can't be defined in a project | help: tag types are global: move this line outside the `project` block",
        ),
        (
            "tag-type tier\n",
            "1:10+4 `tier` is a predefined tag type | help: the predefined types application, tier, deployment, site and label need no `tag-type`",
        ),
        (
            "project p {\n  tag global:tier=web\n}\n",
            "2:7+7 `global:` can't be used in a tag definition | help: a tag belongs to the scope it is defined in: define global tags outside any `project` block",
        ),
        (
            "tag tier = web\n",
            "1:5+4 `tier` is not a tag: expected `type=value` | help: write a tag without spaces around `=`: `tier=web`",
        ),
        (
            "address-group g 10.0.0.0/8\n",
            "1:17+10 expected `=` or `label`, found `10.0.0.0/8` | help: prefixes follow `=`: `address-group g = 10.0.0.0/8`",
        ),
        (
            "address-group g = 10.0.0.0/8,10.1.0.0/16\n",
            "1:19+22 `10.0.0.0/8,10.1.0.0/16`: prefix length must be a number from 0 to 32 | help: separate prefixes with spaces, not commas",
        ),
        (
            "service-group web tcp/80\n",
            "1:19+6 expected `=` after the group's name, found `tcp/80` | help: a service group is `service-group NAME = SERVICE ...`, e.g. `service-group web = tcp/80,443 udp/53`",
        ),
        (
            "service-group web =\n",
            "1:20+1 expected a service after `=`, found the end of the line | help: e.g. `service-group web = tcp/80,443 udp/53`",
        ),
        (
            "application-policy-set s for tier=web {\n}\n",
            "1:30+8 `for` takes an `application` tag, found `tier=web` | help: an application policy set binds to one application: `for application=NAME`, or `global` for every application",
        ),
        (
            "application-policy-set s {\n  a\n}\n",
            "1:26+1 expected `for application=NAME` or `global` after the set's name, found `{` | help: `for application=NAME` binds the set to one application; `global` applies it to every application",
        ),
        (
            "application-policy-set s global {\n  0010: allow any > any on any\n}\n",
            "2:15+3 unexpected `any` after the policy name | help: rules go in a `policy` block; an application policy set lists policy names, one per line",
        ),
        (
            "project a {\nproject b {\n}\n",
            "2:1+7 project `a` is not closed before the next `project` | help: projects don't nest: add a `}` line to close project `a` (line 1) before this line",
        ),
        (
            "policy bad!name {\n}\n",
            "1:8+8 `bad!name` is not a valid name | help: names are made of letters, digits, `.`, `_` or `-`, starting with a letter or digit",
        ),
    ]);
}

#[test]
fn renders_the_direction_error_like_rustc() {
    let source =
        "project shop {\n  policy p {\n    0010: allow tier=web tier=app on tcp/8080\n  }\n}\n";
    let errors = parse(source).unwrap_err();
    assert_eq!(
        errors[0].render("shop.pal", source),
        "error: expected a direction (`>`, `<` or `<>`), found `tier=app`\n \
         --> shop.pal:3:26\n  |\n\
         3 |     0010: allow tier=web tier=app on tcp/8080\n  \
         |                          ^^^^^^^^\n  \
         = help: a rule reads `ENDPOINT > ENDPOINT`: `>` lets the first endpoint initiate, `<` the second, `<>` either\n"
    );
}

#[test]
fn reports_every_error_of_a_file_in_order() {
    let source = "tag tier web\n\
                  policy p {\n  0010: allow any > any on tcp/99999\n  0020: pass any > any on any\n  0030: deny any > any on any\n}\n\
                  policy q tier nope {\n  deny any > any on icmp/1\n}\n\
                  project x {\n  tag-type t\n";
    let errors = parse(source).unwrap_err();
    let places: Vec<(usize, usize)> = errors
        .iter()
        .map(|e| (e.span.line, e.span.column))
        .collect();
    assert_eq!(
        places,
        [(1, 5), (3, 32), (4, 9), (7, 15), (8, 26), (10, 11), (11, 3)]
    );
}

#[test]
fn reads_a_misspelled_block_as_what_was_meant() {
    let source = "polcy p {\n  0010: allow any > any on tcp/99999\n}\ntag a=b\n";
    let errors = parse(source).unwrap_err();
    let places: Vec<(usize, usize)> = errors
        .iter()
        .map(|e| (e.span.line, e.span.column))
        .collect();
    assert_eq!(places, [(1, 1), (2, 32)]);
    let errors = parse("frobnicate {\n  anything at all\n}\n").unwrap_err();
    assert_eq!(errors.len(), 1);
}

#[test]
fn the_documentation_shows_what_the_parser_does() {
    let doc = include_str!("../../../../docs/policy-language.md");
    assert!(
        doc.contains(&format!("```\n{SAMPLE}```")),
        "the sample opens docs/policy-language.md"
    );
    let source = SAMPLE.replace(
        "0020: allow tier=web > tier=app",
        "0020: allow tier=web tier=app",
    );
    let rendered = parse(&source).unwrap_err()[0].render("shop.pal", &source);
    assert!(
        doc.contains(&rendered),
        "docs/policy-language.md shows\n{rendered}"
    );
}

#[test]
fn parse_rule_takes_exactly_one_rule() {
    assert_eq!(
        parse_rule(" # nothing\n").unwrap_err().message,
        "expected a rule, found nothing"
    );
    let e = parse_rule("deny any > any on any\nallow any > any on any").unwrap_err();
    assert_eq!(
        (e.span.line, e.message.as_str()),
        (2, "expected one rule, found a second line")
    );
}

#[test]
fn print_keeps_project_runs_together_and_order_elsewhere() {
    let p = |name: &str| Scope::Project(name.to_string());
    let objects = vec![
        tag(p("a"), "tier", "web"),
        tag(p("a"), "tier", "app"),
        tag(Scope::Global, "tier", "db"),
        tag(p("a"), "site", "x"),
        tag(p("b"), "site", "y"),
    ];
    assert_eq!(
        print(&objects),
        "project a {\n  tag tier=web\n  tag tier=app\n}\n\ntag tier=db\n\n\
         project a {\n  tag site=x\n}\n\nproject b {\n  tag site=y\n}\n"
    );
    assert_eq!(self::objects(&print(&objects)), objects);
}

// Property tests: random valid objects survive printing and parsing, and no input makes
// the parser panic.

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,7}"
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Global), name().prop_map(Scope::Project)]
}

fn tag_ref() -> impl Strategy<Value = TagRef> {
    (any::<bool>(), name(), name()).prop_map(|(global, kind, value)| TagRef {
        global,
        kind,
        value,
    })
}

fn arb_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| Prefix::truncating(std::net::Ipv4Addr::from(a).into(), l)),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| Prefix::truncating(std::net::Ipv6Addr::from(a).into(), l)),
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)).unwrap())
}

fn service() -> impl Strategy<Value = Service> {
    let ports = || proptest::collection::vec(port_range(), 0..3);
    prop_oneof![
        Just(Service::any()),
        any::<u8>()
            .prop_filter("no ports", |p| !Protocol(*p).has_ports())
            .prop_map(|p| Service {
                protocol: Some(Protocol(p)),
                ..Service::any()
            }),
        (
            prop::sample::select(vec![Protocol::TCP, Protocol::UDP, Protocol::SCTP]),
            ports(),
            ports()
        )
            .prop_map(|(p, src_ports, dst_ports)| Service {
                protocol: Some(p),
                src_ports,
                dst_ports
            }),
    ]
}

fn endpoint() -> impl Strategy<Value = EndpointSpec> {
    prop_oneof![
        Just(EndpointSpec::Any),
        proptest::collection::vec(tag_ref(), 1..4).prop_map(EndpointSpec::Tags),
        name().prop_map(EndpointSpec::AddressGroup),
        arb_prefix().prop_map(EndpointSpec::Subnet),
        name().prop_map(EndpointSpec::Network),
    ]
}

fn direction() -> impl Strategy<Value = RuleDirection> {
    prop::sample::select(vec![
        RuleDirection::Forward,
        RuleDirection::Backward,
        RuleDirection::Both,
    ])
}

fn arb_rule() -> impl Strategy<Value = FirewallRule> {
    let action = prop::sample::select(vec![
        RuleAction::Allow,
        RuleAction::Deny,
        RuleAction::NextTier,
    ]);
    let service_spec = prop_oneof![
        service().prop_map(ServiceSpec::Inline),
        name().prop_map(ServiceSpec::Group)
    ];
    let match_tags =
        proptest::collection::vec(name().prop_filter("not label", |n| n != "label"), 0..3);
    (
        (
            name(),
            action,
            endpoint(),
            direction(),
            endpoint(),
            service_spec,
        ),
        (
            match_tags,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(name()),
            proptest::option::of(name()),
        ),
    )
        .prop_map(
            |(
                (sequence, action, endpoint_1, direction, endpoint_2, service),
                (match_tags, log, audit, mirror, redirect),
            )| {
                FirewallRule {
                    sequence,
                    action,
                    endpoint_1,
                    direction,
                    endpoint_2,
                    service,
                    match_tags,
                    log,
                    audit: audit && action == RuleAction::Deny,
                    mirror,
                    redirect: redirect.filter(|_| action == RuleAction::Allow),
                }
            },
        )
}

/// Makes the keys of a block distinct, as the language requires.
fn distinct<T>(items: &mut [T], key: impl Fn(&mut T) -> &mut String) {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter_mut().enumerate() {
        let k = key(item);
        if !seen.insert(k.clone()) {
            k.push_str(&format!("-{i}"));
            seen.insert(k.clone());
        }
    }
}

fn object() -> impl Strategy<Value = Object> {
    let tier = prop::sample::select(TierKind::ALL.to_vec());
    let entries = proptest::collection::vec((name(), name()), 0..4);
    prop_oneof![
        name()
            .prop_filter("custom", |n| !PREDEFINED_TAG_TYPES.contains(&n.as_str()))
            .prop_map(|name| Object::TagType(TagType { name })),
        (scope(), name(), name()).prop_map(|(scope, kind, value)| Object::Tag(Tag {
            scope,
            kind,
            value
        })),
        (
            name(),
            scope(),
            proptest::collection::vec(arb_prefix(), 0..3),
            proptest::option::of(name())
        )
            .prop_map(|(name, scope, prefixes, label)| Object::AddressGroup(
                AddressGroup {
                    name,
                    scope,
                    prefixes,
                    label
                }
            )),
        (name(), scope(), proptest::collection::vec(service(), 1..4)).prop_map(
            |(name, scope, services)| Object::ServiceGroup(ServiceGroup {
                name,
                scope,
                services
            })
        ),
        (
            name(),
            scope(),
            tier,
            prop_oneof![Just(String::new()), name()],
            proptest::collection::vec(arb_rule(), 0..4)
        )
            .prop_map(|(name, scope, tier, sequence, mut rules)| {
                distinct(&mut rules, |r| &mut r.sequence);
                Object::FirewallPolicy(FirewallPolicy {
                    name,
                    scope,
                    tier,
                    sequence,
                    rules,
                })
            }),
        (
            name(),
            scope(),
            proptest::option::of((any::<bool>(), name())),
            entries
        )
            .prop_map(|(name, scope, app, entries)| {
                let mut policies: Vec<PolicyEntry> = entries
                    .into_iter()
                    .map(|(sequence, policy)| PolicyEntry { sequence, policy })
                    .collect();
                distinct(&mut policies, |e| &mut e.sequence);
                let application = app.map(|(global, value)| TagRef {
                    global,
                    ..TagRef::new("application", value)
                });
                Object::ApplicationPolicySet(ApplicationPolicySet {
                    name,
                    scope,
                    application,
                    policies,
                })
            }),
    ]
}

/// Ways to damage a valid text: each deletes, inserts or swaps a little.
fn mutate(text: &str, edits: &[(usize, usize, u8)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    const ALPHABET: &[char] = &[
        '{', '}', '#', ':', '=', '&', '/', ',', '-', '>', '<', ' ', '\n', '\t', 'a', '0', '\u{e9}',
        '\u{202e}', '.',
    ];
    for &(at, len, op) in edits {
        if chars.is_empty() {
            break;
        }
        let at = at % chars.len();
        match op % 3 {
            0 => {
                let end = (at + len % 8).min(chars.len());
                chars.drain(at..end);
            }
            1 => chars.insert(at, ALPHABET[len % ALPHABET.len()]),
            _ => {
                let other = (at + len) % chars.len();
                chars.swap(at, other);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #[test]
    fn printed_objects_parse_back(objects in proptest::collection::vec(object(), 0..8)) {
        let text = print(&objects);
        let parsed = parse(&text).map(Document::into_objects).map_err(|errors| {
            errors.iter().map(|e| e.render("printed.pal", &text)).collect::<String>()
        });
        prop_assert_eq!(parsed, Ok(objects), "printed:\n{}", text);
    }

    #[test]
    fn printed_rules_parse_back(rule in arb_rule()) {
        let text = print_rule(&rule);
        prop_assert_eq!(parse_rule(&text), Ok(rule), "printed: {}", text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
        let _ = parse_rule(&text);
    }

    #[test]
    fn language_shaped_noise_never_panics(words in proptest::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "policy", "project", "application-policy-set", "tag", "tag-type", "address-group",
                "service-group", "{", "}", "\n", "\n", "allow", "deny", "next-tier", "pass", ">", "<",
                "<>", "on", "any", "tcp/80", "from", "1-2", "match", "label", "log", "audit", "mirror",
                "redirect", "0010:", "=", "for", "global", "tier", "seq", "admin", "a=b", "group:g",
                "services:s", "10.0.0.0/8", "::/0", "#",
            ]).prop_map(str::to_string),
            "[ -~]{0,6}",
        ],
        0..60,
    )) {
        let text = words.join(" ");
        let _ = parse(&text);
        let _ = parse_rule(&text);
    }

    #[test]
    fn mutated_samples_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..12)) {
        let text = mutate(SAMPLE, &edits);
        if let Err(errors) = parse(&text) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(e.span.line >= 1 && e.span.column >= 1 && e.span.len >= 1);
                let _ = e.render("mutated.pal", &text);
            }
        }
    }
}
