//! `fleet-manager flows ...`: flow telemetry from the manager's store.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use palisade_api::pb::orchestrator::v1 as pb;
use palisade_flows::query::protocol_name;

use crate::Output;
use crate::client::{Connection, connect, print_json, refused};

/// What `flows query` asks.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// Records reported in the last DURATION: 90s, 15m, 2h, 7d.
    #[arg(long, default_value = "1h", value_parser = palisade_flows::query::parse_duration)]
    since: Duration,
    /// Filter: `verdict=denied and dst.tier=db and port=5432`. Fields: device, verdict,
    /// rule, generation, proto, port, sport, src, dst, addr (either end; address or
    /// prefix), src.endpoint, dst.endpoint, src.project, dst.project, src.TYPE / dst.TYPE
    /// (a tag type: src.tier=web), tag (either end: tag=tier=db); `=` or `!=`, joined by
    /// `and`.
    #[arg(long = "where", default_value = "")]
    filter: String,
    /// Group by these fields (comma-separated), e.g. the tag pairs
    /// `src.application,src.tier,dst.application,dst.tier`, or `rule`, `dst,port`.
    #[arg(long, default_value = "")]
    group_by: String,
    /// At most N rows (top talkers with --order), or N flows with --list.
    #[arg(long)]
    top: Option<u32>,
    /// Order rows by bytes, packets or sessions (descending).
    #[arg(long, default_value = "bytes")]
    order: String,
    /// List the flow records themselves (newest window first in time order) instead of
    /// totals.
    #[arg(long)]
    list: bool,
    /// List the rules of the devices' current programs that decided none of the selected
    /// flows (candidates for clean-up), instead of totals.
    #[arg(long, conflicts_with_all = ["list", "group_by"])]
    never_hit: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `flows query`.
pub async fn query(c: &Connection, args: &QueryArgs, output: Output) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .query_flows(pb::FlowQuery {
            since_ms: now_ms() - args.since.as_millis() as i64,
            until_ms: 0,
            r#where: args.filter.clone(),
            group_by: args.group_by.clone(),
            limit: args.top.unwrap_or(0),
            order: args.order.clone(),
            list: args.list,
            never_hit: args.never_hit,
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&r),
        Output::Text if args.list => {
            out!(
                "{:<5} {:<40} {:<40} {:<7} {:>8} {:>10}  {:<9} {:<16} {}",
                "kind",
                "from",
                "to",
                "proto",
                "packets",
                "bytes",
                "verdict",
                "rule",
                "device"
            );
            for f in &r.flows {
                let Some(rec) = &f.record else { continue };
                let Ok(record) = palisade_api::flows::from_pb(rec, &rec.device.as_str().into())
                else {
                    continue;
                };
                let end = |ip: std::net::IpAddr, port: u16, endpoint: &str| {
                    let addr = if record.protocol == 6
                        || record.protocol == 17
                        || record.protocol == 132
                    {
                        format!("{ip}:{port}")
                    } else {
                        ip.to_string()
                    };
                    if endpoint.is_empty() {
                        addr
                    } else {
                        format!("{addr} ({endpoint})")
                    }
                };
                out!(
                    "{:<5} {:<40} {:<40} {:<7} {:>8} {:>10}  {:<9} {:<16} {}",
                    format!("{:?}", record.kind).to_lowercase(),
                    end(record.src, record.src_port, &f.src_endpoint),
                    end(record.dst, record.dst_port, &f.dst_endpoint),
                    protocol_name(record.protocol),
                    record.total_packets(),
                    record.total_bytes(),
                    record.verdict.to_string(),
                    if record.rule.is_empty() {
                        "-"
                    } else {
                        &record.rule
                    },
                    record.device
                );
            }
            if r.flows.is_empty() {
                eprintln!("no flows match");
            }
        }
        Output::Text => {
            let keys: Vec<String> = if r.keys.is_empty() {
                vec!["(all)".into()]
            } else {
                r.keys.clone()
            };
            let width = |i: usize| {
                r.rows
                    .iter()
                    .map(|row| row.key.get(i).map_or(1, |k| k.len().max(1)))
                    .chain([keys[i].len()])
                    .max()
                    .unwrap_or(1)
            };
            let widths: Vec<usize> = (0..keys.len()).map(width).collect();
            let mut header = String::new();
            for (k, w) in keys.iter().zip(&widths) {
                header.push_str(&format!("{k:<w$}  "));
            }
            out!(
                "{header}{:>9} {:>10} {:>12}",
                "sessions",
                "packets",
                "bytes"
            );
            for row in &r.rows {
                let mut line = String::new();
                for (i, w) in widths.iter().enumerate() {
                    let k = row.key.get(i).map_or("", String::as_str);
                    let k = if k.is_empty() && !r.keys.is_empty() {
                        "-"
                    } else {
                        k
                    };
                    line.push_str(&format!("{k:<w$}  "));
                }
                out!(
                    "{line}{:>9} {:>10} {:>12}",
                    row.sessions,
                    row.packets,
                    row.bytes
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `flows what-if --draft SCOPE --since DURATION`: sessions whose verdict the draft changes
/// (exit 1 when there are any, like `diff`).
pub async fn what_if(
    c: &Connection,
    draft: &str,
    since: Duration,
    output: Output,
) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .what_if(pb::WhatIfRequest {
            scope: draft.to_string(),
            since_ms: now_ms() - since.as_millis() as i64,
            until_ms: 0,
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&r),
        Output::Text => {
            out!(
                "{} recorded session{} replayed against the drafts of {draft}: {} would change",
                r.sessions,
                if r.sessions == 1 { "" } else { "s" },
                r.changes.len()
            );
            for ch in &r.changes {
                let Some(rec) = ch.flow.as_ref().and_then(|f| f.record.as_ref()) else {
                    continue;
                };
                let Ok(record) = palisade_api::flows::from_pb(rec, &rec.device.as_str().into())
                else {
                    continue;
                };
                let f = ch.flow.as_ref().expect("checked above");
                out!(
                    "  {} {}:{} ({}) -> {}:{} ({}): {} -> {}  [{}]",
                    protocol_name(record.protocol),
                    record.src,
                    record.src_port,
                    if f.src_endpoint.is_empty() {
                        "-"
                    } else {
                        &f.src_endpoint
                    },
                    record.dst,
                    record.dst_port,
                    if f.dst_endpoint.is_empty() {
                        "-"
                    } else {
                        &f.dst_endpoint
                    },
                    ch.recorded,
                    ch.draft,
                    ch.decided_by
                );
            }
        }
    }
    Ok(if r.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
