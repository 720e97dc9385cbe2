//! One rule line: `[KEY:] ACTION ENDPOINT DIRECTION ENDPOINT on SERVICE {MODIFIER}`, and
//! the services that service groups share with it.

use std::str::FromStr;

use palisade_program::{NetError, PortRange, Prefix, Protocol};

use crate::objects::{
    EndpointSpec, FirewallRule, RuleAction, RuleDirection, Service, ServiceSpec, TagRef,
    is_valid_name,
};

use super::cursor::{Cursor, Name, PResult, closest, did_you_mean, found, name, pieces};
use super::error::ParseError;
use super::lexer::Token;
use super::span::Span;

/// The action keywords.
pub(super) const ACTIONS: [&str; 3] = ["allow", "deny", "next-tier"];

const MODIFIERS: [&str; 5] = ["match", "log", "audit", "mirror", "redirect"];

const PROTOCOLS: [&str; 6] = ["any", "tcp", "udp", "sctp", "icmp", "icmpv6"];

const ENDPOINT_HELP: &str = "an endpoint is `any`, tags like `tier=web&deployment=prod`, \
    `group:NAME`, `network:NAME` or a subnet like `10.0.0.0/8`";

/// Whether a line that starts with `tok` reads as a rule: a key or an action first.
pub(super) fn starts_rule(tok: &Token<'_>) -> bool {
    tok.text.ends_with(':') || ACTIONS.contains(&tok.text) || tok.text == "pass"
}

/// `KEY:` at the cursor, if the next word ends with a colon.
pub(super) fn key(cur: &mut Cursor<'_, '_>) -> PResult<Option<Name>> {
    let Some(tok) = cur.peek() else {
        return Ok(None);
    };
    let Some(text) = tok.text.strip_suffix(':') else {
        return Ok(None);
    };
    cur.next();
    if text.is_empty() {
        return Err(ParseError::new(tok.span, "expected a key before `:`"));
    }
    name(text, tok.sub_span(0, text.len()), "a key").map(Some)
}

/// A help for a first word that should have been a key (`0010 allow`, `0010 :`).
pub(super) fn key_without_colon(cur: &Cursor<'_, '_>, first: &Token<'_>) -> Option<String> {
    let second = cur.peek_second()?;
    let next_is_rule = second.text == ":" || ACTIONS.contains(&second.text);
    (is_valid_name(first.text) && next_is_rule).then(|| {
        format!(
            "a key is written with its colon attached: `{}: ...`",
            first.text
        )
    })
}

/// A rule line; the rule's `sequence` is its key, or empty when it has none.
pub(super) fn rule(cur: &mut Cursor<'_, '_>) -> PResult<(Option<Name>, FirewallRule)> {
    let key = key(cur)?;
    let action = action(cur, key.is_some())?;
    let endpoint_1 = endpoint(cur, "an endpoint")?;
    let direction = direction(cur)?;
    let endpoint_2 = endpoint(cur, "the second endpoint")?;
    expect_on(cur)?;
    let service = service_spec(cur)?;
    let mut rule = FirewallRule {
        sequence: key.as_ref().map(|k| k.value.clone()).unwrap_or_default(),
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
    };
    modifiers(cur, &mut rule)?;
    Ok((key, rule))
}

fn action(cur: &mut Cursor<'_, '_>, keyed: bool) -> PResult<RuleAction> {
    let what = if keyed {
        "an action (`allow`, `deny` or `next-tier`) after the key"
    } else {
        "an action (`allow`, `deny` or `next-tier`)"
    };
    let colon_help = cur.peek().and_then(|first| key_without_colon(cur, first));
    let tok = cur.expect(what)?;
    match tok.text {
        "allow" => return Ok(RuleAction::Allow),
        "deny" => return Ok(RuleAction::Deny),
        "next-tier" => return Ok(RuleAction::NextTier),
        "pass" => {
            return Err(
                ParseError::new(tok.span, "`pass` is not an action here").with_help(
                    "POLICY.md's \"pass\" is `allow` here, and its pass-to-next-tier is \
                        `next-tier`",
                ),
            );
        }
        _ => {}
    }
    let synonym = match tok.text.to_ascii_lowercase().as_str() {
        "permit" | "accept" => Some("allow"),
        "drop" | "reject" | "block" => Some("deny"),
        "pass-to-next-tier" | "next" | "continue" => Some("next-tier"),
        _ => None,
    };
    let help = synonym
        .map(|s| format!("did you mean `{s}`?"))
        .or_else(|| did_you_mean(tok.text, &ACTIONS))
        .or_else(|| {
            let (_, after) = tok.text.split_once(':')?;
            ACTIONS
                .contains(&after)
                .then(|| "put a space after the key's colon: `KEY: ACTION ...`".to_string())
        })
        .or(colon_help);
    Err(
        ParseError::new(tok.span, format!("expected {what}, found `{}`", tok.text))
            .maybe_help(help),
    )
}

/// One endpoint; `what` names it in "expected ..." messages.
fn endpoint(cur: &mut Cursor<'_, '_>, what: &str) -> PResult<EndpointSpec> {
    let tok = cur.expect(what)?;
    endpoint_word(tok, what)
}

fn endpoint_word(tok: &Token<'_>, what: &str) -> PResult<EndpointSpec> {
    let text = tok.text;
    if text == "any" {
        return Ok(EndpointSpec::Any);
    }
    if let Some(at) = text.find(['<', '>']) {
        let symbol_len = text[at..]
            .chars()
            .take_while(|c| matches!(c, '<' | '>'))
            .count();
        let (before, rest) = text.split_at(at);
        let (symbol, after) = rest.split_at(symbol_len);
        return Err(
            ParseError::new(tok.span, format!("expected {what}, found `{text}`")).with_help(
                format!("put spaces around the direction: `{before} {symbol} {after}`"),
            ),
        );
    }
    if let Some(rest) = text.strip_prefix("group:") {
        let n = name(
            rest,
            tok.tail_span(6),
            "an address group name after `group:`",
        )?;
        return Ok(EndpointSpec::AddressGroup(n.value));
    }
    if let Some(rest) = text.strip_prefix("network:") {
        let n = name(rest, tok.tail_span(8), "a network name after `network:`")?;
        return Ok(EndpointSpec::Network(n.value));
    }
    if text.contains('=') {
        return tags(tok).map(EndpointSpec::Tags);
    }
    match text.parse::<Prefix>() {
        Ok(prefix) => return Ok(EndpointSpec::Subnet(prefix)),
        Err(e) if looks_like_address(text) => return Err(net_error(tok.span, &e)),
        Err(_) => {}
    }
    let err = ParseError::new(tok.span, format!("expected {what}, found `{text}`"));
    let help = match text.split_once(':') {
        Some((kind, _)) if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric()) => {
            let suggestion = closest(kind, &["group", "network", "global"])
                .map(|k| format!(" (did you mean `{k}:`?)"))
                .unwrap_or_default();
            format!(
                "`{kind}:` is not an endpoint kind{suggestion}; use `group:NAME`, \
                    `network:NAME` or `global:TYPE=VALUE`"
            )
        }
        _ if is_valid_name(text) => format!(
            "a tag is written `TYPE=VALUE` (e.g. `tier={text}`), an address group \
                `group:{text}`, a network `network:{text}`"
        ),
        _ => ENDPOINT_HELP.to_string(),
    };
    Err(err.with_help(help))
}

/// Whether a word that is not a valid prefix was meant as one: its error is then the
/// prefix parser's, which says what is wrong with it.
fn looks_like_address(text: &str) -> bool {
    let first_digit = text.starts_with(|c: char| c.is_ascii_digit() || c == ':');
    let hex_with_colon = text.contains(':')
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '/'));
    first_digit || hex_with_colon
}

/// A prefix error, with the corrected prefix as help when there is one.
pub(super) fn net_error(span: Span, e: &NetError) -> ParseError {
    let err = ParseError::new(span, e.to_string());
    match e {
        NetError::HostBits { text, suggestion } => {
            let address = text.split('/').next().unwrap_or(text);
            err.with_help(format!(
                "write `{suggestion}` for the subnet, or `{address}` for the single address"
            ))
        }
        NetError::BadPrefixLength { text, .. } if text.contains(',') => {
            err.with_help("separate prefixes with spaces, not commas")
        }
        _ => err,
    }
}

/// `T=V&T2=V2`, each optionally `global:`.
fn tags(tok: &Token<'_>) -> PResult<Vec<TagRef>> {
    pieces(tok.text, '&')
        .map(|(piece, start, end)| {
            let span = tok.sub_span(start, end);
            if piece.is_empty() {
                return Err(
                    ParseError::new(span, format!("empty tag in `{}`", tok.text))
                        .with_help("join tags with `&` and no spaces: `tier=web&deployment=prod`"),
                );
            }
            TagRef::from_str(piece).map_err(|m| ParseError::new(span, m))
        })
        .collect()
}

fn direction(cur: &mut Cursor<'_, '_>) -> PResult<RuleDirection> {
    let tok = cur.next();
    if let Some(t) = tok
        && let Ok(d) = t.text.parse::<RuleDirection>()
    {
        return Ok(d);
    }
    let err = ParseError::new(
        cur.span_of(tok),
        format!(
            "expected a direction (`>`, `<` or `<>`), found {}",
            found(tok)
        ),
    );
    let help = match tok.map(|t| t.text) {
        Some("->" | "=>" | "-->" | "to") => "write `>`: the first endpoint initiates",
        Some("<-" | "<=" | "<--" | "from") => "write `<`: the second endpoint initiates",
        Some("<->" | "<=>" | "<-->") => "write `<>`: either endpoint initiates",
        Some("on") => {
            "a rule reads `ENDPOINT > ENDPOINT on SERVICE`: the second endpoint is missing"
        }
        _ => {
            "a rule reads `ENDPOINT > ENDPOINT`: `>` lets the first endpoint initiate, \
             `<` the second, `<>` either"
        }
    };
    Err(err.with_help(help))
}

fn expect_on(cur: &mut Cursor<'_, '_>) -> PResult<()> {
    let tok = cur.next();
    if tok.is_some_and(|t| t.text == "on") {
        return Ok(());
    }
    let err = ParseError::new(
        cur.span_of(tok),
        format!("expected `on` and the service, found {}", found(tok)),
    );
    let help = match tok {
        Some(t) if looks_like_service(t.text) => format!("write `on {}`", t.text),
        _ => "a rule ends with `on SERVICE`, e.g. `on tcp/443`, `on any` or `on services:web`"
            .to_string(),
    };
    Err(err.with_help(help))
}

fn looks_like_service(text: &str) -> bool {
    let proto = text.split('/').next().unwrap_or(text);
    text.starts_with("services:") || proto.parse::<Protocol>().is_ok() || proto == "any"
}

fn service_spec(cur: &mut Cursor<'_, '_>) -> PResult<ServiceSpec> {
    let tok = cur.expect("a service after `on` (`any`, `tcp/443`, `services:NAME`, ...)")?;
    if let Some(rest) = tok.text.strip_prefix("services:") {
        let group = name(
            rest,
            tok.tail_span(9),
            "a service group name after `services:`",
        )?;
        if let Some(from) = cur.eat("from") {
            return Err(ParseError::new(
                from.span,
                "`from` can't follow a service group: its services carry their own ports",
            ));
        }
        return Ok(ServiceSpec::Group(group.value));
    }
    service(tok, cur).map(ServiceSpec::Inline)
}

/// `PROTO[/PORTS] [from PORTS]` starting with `tok`; `from` is read from `cur`.
pub(super) fn service(tok: &Token<'_>, cur: &mut Cursor<'_, '_>) -> PResult<Service> {
    let (proto_text, ports) = match tok.text.split_once('/') {
        Some((p, _)) => (p, Some(p.len() + 1)),
        None => (tok.text, None),
    };
    let proto_span = tok.sub_span(0, proto_text.len());
    let protocol = if proto_text == "any" {
        None
    } else {
        Some(proto_text.parse::<Protocol>().map_err(|e| {
            let help = if proto_text.contains(':') {
                Some("a service group is written `services:NAME`".to_string())
            } else if proto_text.parse::<u32>().is_ok() {
                Some(format!(
                    "for a port, write `tcp/{proto_text}` or `udp/{proto_text}`"
                ))
            } else {
                did_you_mean(proto_text, &PROTOCOLS)
            };
            ParseError::new(proto_span, e.to_string()).maybe_help(help)
        })?)
    };
    let mut service = Service {
        protocol,
        ..Service::default()
    };
    if let Some(start) = ports {
        let span = tok.tail_span(start);
        check_ports_allowed(protocol, span, proto_text, "ports")?;
        service.dst_ports = port_list(tok, start, "after `/`")?;
    }
    if let Some(from) = cur.eat("from") {
        check_ports_allowed(protocol, from.span, proto_text, "source ports")?;
        let list = cur.expect("source ports after `from` (e.g. `from 1024-65535`)")?;
        service.src_ports = port_list(list, 0, "after `from`")?;
    }
    Ok(service)
}

fn check_ports_allowed(
    protocol: Option<Protocol>,
    span: Span,
    proto_text: &str,
    what: &str,
) -> PResult<()> {
    match protocol {
        None => Err(ParseError::new(span, format!("{what} need a protocol"))
            .with_help("write `tcp/PORTS`, `udp/PORTS` or `sctp/PORTS`")),
        Some(p) if !p.has_ports() => Err(ParseError::new(
            span,
            format!("`{proto_text}` has no ports: {what} are only for tcp, udp and sctp"),
        )),
        Some(_) => Ok(()),
    }
}

/// The comma-separated ports and ranges of `tok.text[start..]`.
fn port_list(tok: &Token<'_>, start: usize, after: &str) -> PResult<Vec<PortRange>> {
    let text = tok.text.get(start..).unwrap_or_default();
    if text.is_empty() {
        return Err(ParseError::new(
            tok.tail_span(start),
            format!("expected ports {after}, e.g. `80,443` or `8000-8080`"),
        ));
    }
    pieces(text, ',')
        .map(|(piece, s, e)| {
            let span = tok.sub_span(start + s, start + e);
            if piece.is_empty() {
                return Err(ParseError::new(span, format!("empty port in `{text}`"))
                    .with_help("separate ports with `,` and no spaces: `80,443`"));
            }
            let numbers: Vec<&str> = piece.split('-').collect();
            let well_formed = numbers.len() <= 2
                && numbers
                    .iter()
                    .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !well_formed {
                return Err(ParseError::new(
                    span,
                    format!("`{piece}` is not a port or a port range"),
                )
                .with_help("write a port like `443` or a range like `8000-8080`"));
            }
            piece
                .parse::<PortRange>()
                .map_err(|e| ParseError::new(span, e.to_string()))
        })
        .collect()
}

fn modifiers(cur: &mut Cursor<'_, '_>, rule: &mut FirewallRule) -> PResult<()> {
    let mut seen: Vec<&str> = Vec::new();
    while let Some(tok) = cur.next() {
        let word = tok.text;
        if MODIFIERS.contains(&word) {
            if seen.contains(&word) {
                return Err(ParseError::new(
                    tok.span,
                    format!("`{word}` is given twice"),
                ));
            }
            seen.push(word);
        }
        match word {
            "match" => rule.match_tags = match_list(cur)?,
            "log" => rule.log = true,
            "audit" => {
                if rule.action != RuleAction::Deny {
                    return Err(
                        ParseError::new(tok.span, "`audit` is only for `deny` rules").with_help(
                            "`audit` logs \"would deny\" and lets the connection through; \
                                to record allowed connections, use `log`",
                        ),
                    );
                }
                rule.audit = true;
            }
            "mirror" => {
                rule.mirror = Some(
                    cur.expect_name("a mirror destination after `mirror`")?
                        .value,
                );
            }
            "redirect" => {
                if rule.action != RuleAction::Allow {
                    return Err(
                        ParseError::new(tok.span, "`redirect` is only for `allow` rules")
                            .with_help(
                                "`redirect NAME` hands the connections a rule allows to the L7 \
                                firewall service NAME",
                            ),
                    );
                }
                rule.redirect = Some(
                    cur.expect_name("an L7 service name after `redirect`")?
                        .value,
                );
            }
            "from" => {
                return Err(ParseError::new(
                    tok.span,
                    "`from` must follow the service's protocol and ports",
                )
                .with_help("write e.g. `on tcp/443 from 1024-65535`"));
            }
            _ => {
                let help = if looks_like_service(word) {
                    Some(
                        "a rule has one service: for several, define a `service-group` and \
                        write `on services:NAME`"
                            .to_string(),
                    )
                } else {
                    did_you_mean(word, &MODIFIERS)
                };
                return Err(ParseError::new(
                    tok.span,
                    format!(
                        "expected a modifier (`match`, `log`, `audit`, `mirror` or \
                            `redirect`), found `{word}`"
                    ),
                )
                .maybe_help(help));
            }
        }
    }
    Ok(())
}

/// The tag types after `match`: `TYPE[,TYPE]`.
fn match_list(cur: &mut Cursor<'_, '_>) -> PResult<Vec<String>> {
    let tok = cur.expect("tag types after `match` (e.g. `match application,deployment`)")?;
    pieces(tok.text, ',')
        .map(|(piece, s, e)| {
            let span = tok.sub_span(s, e);
            if piece.is_empty() {
                return Err(
                    ParseError::new(span, format!("empty tag type in `{}`", tok.text)).with_help(
                        "separate tag types with `,` and no spaces: \
                         `match application,deployment`",
                    ),
                );
            }
            if piece == "label" {
                return Err(
                    ParseError::new(span, "`match` can't use `label`").with_help(
                        "an endpoint may carry several labels, so they can't be compared; match \
                        single-valued types such as `application` or `deployment`",
                    ),
                );
            }
            name(piece, span, "a tag type").map(|n| n.value)
        })
        .collect()
}
