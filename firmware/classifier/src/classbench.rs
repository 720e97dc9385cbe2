//! ClassBench 5-tuple files (see `shared/data/classbench/README.md`): rule lists, traces and
//! first-match answers, with errors that name the line.

use thiserror::Error;

use crate::engine::{Key, Rule};

/// A line that is not in the expected format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> FormatError {
    FormatError {
        line,
        message: message.into(),
    }
}

fn parse_prefix(text: &str, line: usize, what: &str) -> Result<(u32, u8), FormatError> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| err(line, format!("{what} `{text}`: expected a.b.c.d/len")))?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| {
        err(
            line,
            format!("{what} `{text}`: `{addr}` is not an IPv4 address"),
        )
    })?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| err(line, format!("{what} `{text}`: prefix length must be 0-32")))?;
    let addr = u32::from(addr);
    let mask = <u32 as crate::engine::Addr>::mask(len);
    if addr & mask != addr {
        return Err(err(
            line,
            format!("{what} `{text}`: host bits are set beyond /{len}"),
        ));
    }
    Ok((addr, len))
}

fn parse_range(text: &str, line: usize, what: &str) -> Result<(u16, u16), FormatError> {
    let (lo, hi) = text
        .split_once(" : ")
        .ok_or_else(|| err(line, format!("{what} `{text}`: expected `lo : hi`")))?;
    let port = |p: &str| {
        p.parse::<u16>().map_err(|_| {
            err(
                line,
                format!("{what} `{text}`: `{p}` is not a port 0-65535"),
            )
        })
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo > hi {
        return Err(err(line, format!("{what} `{text}`: the range is empty")));
    }
    Ok((lo, hi))
}

fn parse_proto(text: &str, line: usize) -> Result<(u8, u8), FormatError> {
    let (v, m) = text
        .split_once('/')
        .ok_or_else(|| err(line, format!("protocol `{text}`: expected 0xPP/0xMM")))?;
    let hex = |h: &str| {
        h.strip_prefix("0x")
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| err(line, format!("protocol `{text}`: `{h}` is not 0x00-0xFF")))
    };
    let (v, m) = (hex(v)?, hex(m)?);
    Ok((v & m, m))
}

/// Parses a `.rules` file: one rule per line, first line = highest priority.
pub fn parse_rules(text: &str) -> Result<Vec<Rule<u32>>, FormatError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let fields: Vec<&str> = l.split('\t').collect();
            if fields.len() != 5 {
                return Err(err(
                    line,
                    format!("expected 5 tab-separated fields, found {}", fields.len()),
                ));
            }
            let src = fields[0]
                .strip_prefix('@')
                .ok_or_else(|| err(line, "a rule starts with `@`"))?;
            Ok(Rule {
                tag: 0,
                src: parse_prefix(src, line, "source")?,
                dst: parse_prefix(fields[1], line, "destination")?,
                sport: parse_range(fields[2], line, "source ports")?,
                dport: parse_range(fields[3], line, "destination ports")?,
                proto: parse_proto(fields[4], line)?,
                locals: crate::ANY_LOCAL,
            })
        })
        .collect()
}

/// Parses a `.trace` file: `src dst sport dport proto` per line.
pub fn parse_trace(text: &str) -> Result<Vec<Key<u32>>, FormatError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() != 5 {
                return Err(err(
                    line,
                    format!("expected 5 space-separated numbers, found {}", f.len()),
                ));
            }
            let num = |s: &str, max: u64, what: &str| {
                s.parse::<u64>()
                    .ok()
                    .filter(|v| *v <= max)
                    .ok_or_else(|| err(line, format!("{what} `{s}` is not a number 0-{max}")))
            };
            Ok(Key {
                tag: 0,
                src: num(f[0], u64::from(u32::MAX), "source address")? as u32,
                dst: num(f[1], u64::from(u32::MAX), "destination address")? as u32,
                sport: num(f[2], 65535, "source port")? as u16,
                dport: num(f[3], 65535, "destination port")? as u16,
                proto: num(f[4], 255, "protocol")? as u8,
                local: 0,
            })
        })
        .collect()
}

/// Parses a `.expected` file: the 0-based index of the first matching rule, or -1.
pub fn parse_expected(text: &str) -> Result<Vec<Option<u32>>, FormatError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| match l.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(v) if (0..=i64::from(u32::MAX)).contains(&v) => Ok(Some(v as u32)),
            _ => Err(err(i + 1, format!("`{l}` is not a rule index or -1"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_format_and_names_bad_lines() {
        let rules = parse_rules(
            "@93.227.57.74/32\t196.97.200.69/32\t0 : 65535\t32201 : 32201\t0x06/0xFF\n@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].dport, (32201, 32201));
        assert_eq!(rules[0].proto, (6, 0xff));
        assert_eq!(rules[1].src, (0, 0));
        let e = parse_rules("@1.2.3.4/8\t0.0.0.0/0\t0 : 1\t0 : 1\t0x00/0x00\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: source `1.2.3.4/8`: host bits are set beyond /8"
        );
        let e = parse_rules("x\n").unwrap_err();
        assert!(e.to_string().contains("expected 5 tab-separated fields"));
        let trace = parse_trace("16909060 0 1 2 6\n").unwrap();
        assert_eq!(trace[0].src, 0x01020304);
        assert!(parse_trace("1 2 3 70000 6\n").is_err());
        assert_eq!(parse_expected("3\n-1\n").unwrap(), vec![Some(3), None]);
        assert!(parse_expected("-2\n").is_err());
    }
}
